package federationtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
)

// ErrNotConverged reports nodes that still differ when WaitConverged gives
// up.
var ErrNotConverged = errors.New("mesh did not converge")

// WaitConverged waits until every node holds the same version vector and
// identical records (values, tombstones and metadata) in every collection
// that syncs, or until ctx ends; it then returns an error wrapping
// ErrNotConverged that describes the first difference. The mesh should be
// healed, with faults off, for it to succeed.
func (m *Mesh) WaitConverged(ctx context.Context) error {
	var last error
	for {
		if last = m.Converged(context.WithoutCancel(ctx)); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotConverged, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Converged checks once whether every node holds the same state, and
// describes the first difference when not.
func (m *Mesh) Converged(ctx context.Context) error {
	ref, err := m.Snapshot(ctx, 0)
	if err != nil {
		return err
	}
	for i := 1; i < len(m.nodes); i++ {
		s, err := m.Snapshot(ctx, i)
		if err != nil {
			return err
		}
		if d := ref.diff(s); d != "" {
			return fmt.Errorf("node 0 and node %d differ: %s", i, d)
		}
	}
	return nil
}

// Snapshot is one node's synced state: its version vector, every record
// of the collections that sync (tombstones included) and their Merkle roots.
type Snapshot struct {
	VV      core.VersionVector
	Records map[string]core.Record // by collection + "\x00" + key
	Roots   map[string]federation.Digest
}

// Snapshot reads node i's synced state from its store.
func (m *Mesh) Snapshot(ctx context.Context, i int) (Snapshot, error) {
	n := m.Node(i)
	st := m.Store(i)
	vv, err := st.VersionVector(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	s := Snapshot{VV: vv, Records: map[string]core.Record{}, Roots: n.Roots()}
	colls, err := st.Collections(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	for _, c := range colls {
		if !n.Policy(c).Syncs() {
			continue
		}
		if _, ok := s.Roots[c]; !ok { // the SDK's own synced collections, which Roots leaves out
			s.Roots[c] = n.Root(c)
		}
		err := st.Scan(ctx, c, core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
			s.Records[c+"\x00"+r.Key] = r
			return nil
		})
		if err != nil {
			return Snapshot{}, err
		}
	}
	return s, nil
}

func (s Snapshot) diff(o Snapshot) string {
	if s.VV.Compare(o.VV) != core.Equal {
		return fmt.Sprintf("version vectors %v vs %v", s.VV, o.VV)
	}
	if len(s.Records) != len(o.Records) {
		return fmt.Sprintf("%d records vs %d", len(s.Records), len(o.Records))
	}
	for k, r := range s.Records {
		q, ok := o.Records[k]
		if !ok {
			return fmt.Sprintf("record %q missing", strings.ReplaceAll(k, "\x00", "/"))
		}
		if !sameRecord(r, q) {
			return fmt.Sprintf("record %q: %s vs %s", strings.ReplaceAll(k, "\x00", "/"), describe(r), describe(q))
		}
	}
	for c, root := range s.Roots {
		if o.Roots[c] != root {
			return fmt.Sprintf("merkle roots of %q differ", c)
		}
	}
	if len(s.Roots) != len(o.Roots) {
		return fmt.Sprintf("roots of %d collections vs %d", len(s.Roots), len(o.Roots))
	}
	return ""
}

// sameRecord compares two versions, values by their digests: a stub (a
// version held without its value, selective sync) is the same record as
// the full version whose value has its digest.
func sameRecord(a, b core.Record) bool {
	same := string(a.Value) == string(b.Value)
	if a.Stub || b.Stub {
		same = a.Digest() == b.Digest() && a.Size() == b.Size()
	}
	return same && a.Summary == b.Summary && a.Deleted == b.Deleted && a.Timestamp == b.Timestamp &&
		a.Origin == b.Origin && a.Seq == b.Seq && a.Context.Compare(b.Context) == core.Equal
}

func describe(r core.Record) string {
	if r.Stub {
		return fmt.Sprintf("{stub of %d bytes %x ts=%v origin=%s seq=%d ctx=%v}", r.ValueSize, r.ValueDigest[:6], r.Timestamp, r.Origin.Short(), r.Seq, r.Context)
	}
	return fmt.Sprintf("{%q deleted=%v ts=%v origin=%s seq=%d ctx=%v}", r.Value, r.Deleted, r.Timestamp, r.Origin.Short(), r.Seq, r.Context)
}
