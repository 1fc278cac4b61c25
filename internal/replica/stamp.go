package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Local writes after far-future versions.
//
// Versions of a key are ordered by causality first (a local write's
// context covers everything the device holds), and concurrent versions by
// last-writer-wins on the timestamp. The two orders must agree, or merges
// stop being associative: a device holding a far-future version merged
// with a concurrent one of its own judges a later overwrite of the
// far-future version concurrent with that merge, and brings the
// far-future value back on every device, losing the overwrite. A hybrid
// logical clock keeps them in agreement by following every timestamp it
// sees, but under the drift rule (core.HLC) this device's clock does not
// follow a peer's timestamp beyond the bound, so its next reading can lie
// below a version it has seen and now supersedes.
//
// So a local write is stamped at least one tick after the version of its
// key that it supersedes: max(clock reading, held version + 1), for that
// record only. The clock itself still does not follow, so the device's
// other writes keep their own time and a far-ahead peer cannot drag them.
// The check costs a read per written key only while the clock reads at or
// below the latest timestamp it did not follow (Replica.ahead, kept in the
// store's metadata so that it survives a restart).

const metaAhead = "node.hlc.ahead"

// noteAhead records ts, a timestamp this node holds (or is about to
// commit) that its clock may not have followed. Called with writeMu held,
// before the records carrying ts are committed.
func (n *Replica) noteAhead(ts core.Timestamp) {
	if ts <= n.hlc.Last() || ts <= n.ahead {
		return
	}
	n.ahead = ts
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ts))
	if err := n.store.SetMeta(context.Background(), metaAhead, b[:]); err != nil {
		// Without it, a restart forgets that writes must be stamped after
		// the held versions until the clock passes ts.
		n.log.Warn("save far-future timestamp mark", "err", err)
	}
}

func loadAhead(ctx context.Context, s core.Store) (core.Timestamp, error) {
	b, err := s.Meta(ctx, metaAhead)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("load far-future mark: %w", core.ErrCorrupt)
	}
	return core.Timestamp(binary.BigEndian.Uint64(b)), nil
}

// stampAfter returns, for the ops of a local transaction stamped ts, the
// timestamp each synced op must carry instead to follow the version of its
// key held here (0: ts is fine), or nil when no held version can be as late
// as ts. Called with writeMu held.
func (n *Replica) stampAfter(ctx context.Context, ops []Op, ts core.Timestamp) ([]core.Timestamp, error) {
	if ts > n.ahead {
		return nil, nil
	}
	out := make([]core.Timestamp, len(ops))
	for i, op := range ops {
		if !n.policy(op.Collection).Syncs() {
			continue
		}
		cur, err := n.store.Get(ctx, op.Collection, op.Key)
		if errors.Is(err, core.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if cur.Timestamp >= ts {
			out[i] = cur.Timestamp + 1
		}
	}
	return out, nil
}
