package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/devicemesh/federation/core"
)

// device returns a distinct, non-zero device id for n.
func device(n byte) core.DeviceID {
	var d core.DeviceID
	for i := range d {
		d[i] = n ^ byte(i*7)
	}
	d[0] = n
	return d
}

// op is one write of a test transaction.
type op struct {
	coll, key string
	value     []byte
	deleted   bool
}

func put(coll, key, value string) op { return op{coll: coll, key: key, value: []byte(value)} }
func del(coll, key string) op        { return op{coll: coll, key: key, deleted: true} }

// writer builds transactions the way a node does for local writes: each
// change's context is everything the writer has seen plus its own dot.
type writer struct {
	origin core.DeviceID
	seq    uint64
	ts     core.Timestamp
	seen   core.VersionVector
}

func newWriter(n byte) *writer {
	return &writer{origin: device(n), ts: core.MakeTimestamp(1_700_000_000_000, 0), seen: core.VersionVector{}}
}

// batch returns the next transaction of ops (records mirror changes).
func (w *writer) batch(ops ...op) core.Batch {
	first := w.seq + 1
	w.ts++
	b := core.Batch{}
	for i, o := range ops {
		seq := first + uint64(i)
		cctx := w.seen.Clone()
		cctx[w.origin] = seq
		val := o.value
		if o.deleted {
			val = nil
		}
		r := core.Record{Collection: o.coll, Key: o.key, Value: val, Deleted: o.deleted,
			Timestamp: w.ts, Origin: w.origin, Seq: seq, Context: cctx}
		b.Records = append(b.Records, r)
		b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: first, TxnLen: uint32(len(ops))})
	}
	w.seq = first + uint64(len(ops)) - 1
	w.seen[w.origin] = w.seq
	return b
}

// commit commits the next transaction of ops and fails the test on error.
func (w *writer) commit(t testing.TB, st core.Store, ops ...op) core.Batch {
	t.Helper()
	b := w.batch(ops...)
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatalf("commit: %v", err)
	}
	return b
}

// sameRecord reports how got differs from want ("" when equal).
func sameRecord(got, want core.Record) string {
	switch {
	case got.Collection != want.Collection || got.Key != want.Key:
		return fmt.Sprintf("record %s/%q, want %s/%q", got.Collection, got.Key, want.Collection, want.Key)
	case got.Deleted != want.Deleted:
		return fmt.Sprintf("%s/%q: deleted=%v, want %v", got.Collection, got.Key, got.Deleted, want.Deleted)
	case got.Stub != want.Stub || got.Summary != want.Summary:
		return fmt.Sprintf("%s/%q: stub=%v summary=%v, want %v, %v", got.Collection, got.Key, got.Stub, got.Summary, want.Stub, want.Summary)
	case got.Stub && (got.ValueSize != want.ValueSize || got.ValueDigest != want.ValueDigest || len(got.Value) != 0):
		return fmt.Sprintf("%s/%q: stub of %d bytes, want %d (or a digest that differs, or a value)", got.Collection, got.Key, got.ValueSize, want.ValueSize)
	case got.Stub:
	case !got.Deleted && !bytes.Equal(got.Value, want.Value):
		return fmt.Sprintf("%s/%q: value %.40q, want %.40q", got.Collection, got.Key, got.Value, want.Value)
	case got.Deleted && len(got.Value) != 0:
		return fmt.Sprintf("%s/%q: tombstone carries a value", got.Collection, got.Key)
	case !got.Deleted && got.Value == nil:
		return fmt.Sprintf("%s/%q: live record with nil value", got.Collection, got.Key)
	case got.Timestamp != want.Timestamp:
		return fmt.Sprintf("%s/%q: timestamp %v, want %v", got.Collection, got.Key, got.Timestamp, want.Timestamp)
	case got.Origin != want.Origin || got.Seq != want.Seq:
		return fmt.Sprintf("%s/%q: dot %s:%d, want %s:%d", got.Collection, got.Key, got.Origin.Short(), got.Seq, want.Origin.Short(), want.Seq)
	case got.Context.Compare(want.Context) != core.Equal:
		return fmt.Sprintf("%s/%q: context %v, want %v", got.Collection, got.Key, got.Context, want.Context)
	}
	return ""
}

func requireRecord(t testing.TB, got, want core.Record) {
	t.Helper()
	if d := sameRecord(got, want); d != "" {
		t.Fatal(d)
	}
}

func mustGet(t testing.TB, st core.Store, coll, key string) core.Record {
	t.Helper()
	r, err := st.Get(context.Background(), coll, key)
	if err != nil {
		t.Fatalf("get %s/%q: %v", coll, key, err)
	}
	return r
}

func requireNotFound(t testing.TB, st core.Store, coll, key string) {
	t.Helper()
	_, err := st.Get(context.Background(), coll, key)
	if !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("get %s/%q: err = %v, want ErrNotFound", coll, key, err)
	}
}

func scanAll(t testing.TB, st core.Store, coll string, kr core.KeyRange) []core.Record {
	t.Helper()
	var out []core.Record
	err := st.Scan(context.Background(), coll, kr, func(r core.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s %+v: %v", coll, kr, err)
	}
	return out
}

func changes(t testing.TB, st core.Store, origin core.DeviceID, after uint64, limit int) []core.Change {
	t.Helper()
	var out []core.Change
	err := st.Changes(context.Background(), origin, after, limit, func(c core.Change) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("changes: %v", err)
	}
	return out
}

func stats(t testing.TB, st core.Store) core.StoreStats {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return s
}

func versionVector(t testing.TB, st core.Store) core.VersionVector {
	t.Helper()
	v, err := st.VersionVector(context.Background())
	if err != nil {
		t.Fatalf("version vector: %v", err)
	}
	return v
}

func keys(rs []core.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out
}

func seqs(cs []core.Change) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.Seq
	}
	return out
}
