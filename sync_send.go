package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// sendLoop streams to the peer every change it lacks, then waits for new
// commits and streams those, until ctx ends. Memory stays bounded: changes
// are read from the log in batches and written as they are read, and the
// stream's flow control holds the loop back when the peer is slow.
func (ps *peerSession) sendLoop(ctx context.Context) error {
	select {
	case <-ps.hello:
	case <-ctx.Done():
		return ctx.Err()
	}
	var announced core.VersionVector
	repairs := 0 // repairs since the last round that sent changes normally
	for {
		wake := ps.n.changed.wait() // before reading state, so no commit is missed
		if err := ps.serveControl(ctx); err != nil {
			return err
		}
		vv, err := ps.n.store.VersionVector(ctx)
		if err != nil {
			return fmt.Errorf("sync send: %w", err)
		}
		sent, err := ps.sendMissing(ctx, vv)
		if errors.Is(err, ErrGap) {
			// Our log cannot bring the peer up to date: repair by Merkle
			// descent, then resume deltas from what the repair covered.
			ps.n.log.Info("changelog cannot serve peer; repairing", "peer", ps.peer.Short(), "err", err)
			if repairs++; repairs > 2 {
				return fmt.Errorf("sync send: repair did not close the gap: %w", err)
			}
			if err := ps.repair(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		repairs = 0
		if sent {
			continue
		}
		if announced == nil || announced.Compare(vv) != core.Equal {
			snap, roots, err := ps.n.snapshot(ctx)
			if err != nil {
				return err
			}
			if snap.Compare(vv) != core.Equal {
				continue // committed meanwhile: send that first
			}
			if err := ps.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, vv), roots)); err != nil {
				return err
			}
			announced = vv
		}
		select {
		case <-wake:
		case <-ps.kick:
		case <-ctx.Done():
			return ctx.Err()
		case <-ps.repairReq:
			// The peer holds the same changes but different records (its
			// roots differ from ours): reconcile by Merkle descent.
			if err := ps.repair(ctx); err != nil {
				return err
			}
			announced = nil
		case <-time.After(heartbeat):
			// Repeat the announcement now and then: it lets the peer notice
			// frames that never arrived and a session that went quiet.
			announced = nil
		}
	}
}

// sendMissing sends one round of changes the peer lacks, origin by origin,
// and reports whether it sent anything.
func (ps *peerSession) sendMissing(ctx context.Context, vv core.VersionVector) (bool, error) {
	sent := false
	for _, origin := range vv.Devices() {
		if vv[origin] <= ps.peerHasGet(origin) {
			continue
		}
		n, err := ps.sendOrigin(ctx, origin, vv[origin], 0)
		if err != nil {
			return sent, err
		}
		sent = sent || n > 0
	}
	return sent, nil
}

// sendOrigin sends origin's changes that the peer lacks, up to sequence
// upTo, in frames of about batchBytes, stopping after about
// batchChanges so that other origins and new commits get their turn.
//
// Delivery is causal: before a change goes out, every change in its causal
// context that the peer lacks is sent first (recursively, origin by
// origin). So a device never holds a change without what it depends on, and
// a local write's context (the device's version vector) always covers the
// versions it overwrote. The log is read before each frame is written,
// never while a read is open, so a slow peer holds no store resources.
func (ps *peerSession) sendOrigin(ctx context.Context, origin core.DeviceID, upTo uint64, depth int) (int, error) {
	if depth > maxCausalDepth {
		return 0, fmt.Errorf("sync send: causal dependencies nest deeper than %d", maxCausalDepth)
	}
	total := 0
	for total < batchChanges {
		have := ps.peerHasGet(origin)
		if have >= upTo {
			break
		}
		batch, err := ps.readBatch(ctx, origin, have)
		if err != nil {
			return total, err
		}
		if len(batch) == 0 {
			if have < upTo {
				return total, fmt.Errorf("sync send %s: %w: log holds nothing after %d, peer needs up to %d", origin.Short(), ErrGap, have, upTo)
			}
			return total, nil
		}
		cut, dep, need := ps.causalCut(batch, upTo)
		if err := ps.sendBatch(origin, batch[:cut]); err != nil {
			return total, err
		}
		if err := ps.serveControl(ctx); err != nil {
			return total, err
		}
		total += cut
		if dep.IsZero() {
			if cut < len(batch) {
				break // reached upTo
			}
			continue
		}
		n, err := ps.sendOrigin(ctx, dep, need, depth+1)
		total += n
		if err != nil {
			return total, err
		}
		if ps.peerHasGet(dep) < need {
			return total, fmt.Errorf("sync send %s: %w: dependency %s:%d is not in the log", origin.Short(), ErrGap, dep.Short(), need)
		}
	}
	return total, nil
}

// maxCausalDepth bounds the recursion of sendOrigin: a chain of
// dependencies visits each origin at most once per level, and a mesh has
// few devices.
const maxCausalDepth = 64

// causalCut returns how many leading changes of batch may go out now: it
// stops before the first change beyond upTo, or the first whose causal
// context names a change of another origin the peer lacks (returned as dep,
// need).
func (ps *peerSession) causalCut(batch []core.Change, upTo uint64) (cut int, dep core.DeviceID, need uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, c := range batch {
		if c.Seq > upTo {
			return i, core.DeviceID{}, 0
		}
		for d, n := range c.Context {
			if d != c.Origin && n > ps.peerHas[d] {
				return i, d, n
			}
		}
	}
	return len(batch), core.DeviceID{}, 0
}

// sendBatch writes one Changes frame and records that the peer now has it.
func (ps *peerSession) sendBatch(origin core.DeviceID, batch []core.Change) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ps.sendChanges(wire.TypeChanges, batch); err != nil {
		return err
	}
	ps.stats.changesSent.Add(uint64(len(batch)))
	ps.peerHasRaise(origin, batch[len(batch)-1].Seq)
	ps.n.record(context.Background(), audit.BatchSent(ps.peer, "*", 0, int64(len(batch)), 0))
	return nil
}

// errBatchFull stops a changelog read once a frame's worth is collected.
var errBatchFull = errors.New("batch full")

// readBatch reads up to a frame's worth of origin's changes after have.
func (ps *peerSession) readBatch(ctx context.Context, origin core.DeviceID, have uint64) ([]core.Change, error) {
	var batch []core.Change
	size := 0
	next := have + 1
	err := ps.n.store.Changes(ctx, origin, have, batchChanges, func(c core.Change) error {
		if c.Seq != next {
			// The log no longer holds what the peer needs (compacted):
			// deltas cannot bring it up to date; Merkle repair must.
			return fmt.Errorf("sync send %s: %w: log resumes at %d, peer needs %d", origin.Short(), ErrGap, c.Seq, next)
		}
		// A frame holds about batchBytes, or one change alone when that
		// change is larger: never more than the receiver's frame limit.
		csize := changeSize(c) + 40*len(c.Context)
		if len(batch) > 0 && size+csize > batchBytes {
			return errBatchFull
		}
		next++
		batch = append(batch, c)
		size += csize
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return nil, err
	}
	return batch, nil
}

func (ps *peerSession) peerHasGet(d core.DeviceID) uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.peerHas[d]
}

func (ps *peerSession) peerHasRaise(d core.DeviceID, seq uint64) {
	ps.mu.Lock()
	if seq > ps.peerHas[d] {
		ps.peerHas[d] = seq
	}
	ps.mu.Unlock()
}
