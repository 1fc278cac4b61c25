package federation

import (
	"context"
	"errors"
	"fmt"

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
	for {
		wake := ps.n.changed.wait() // before reading state, so no commit is missed
		vv, err := ps.n.store.VersionVector(ctx)
		if err != nil {
			return fmt.Errorf("sync send: %w", err)
		}
		sent, err := ps.sendMissing(ctx, vv)
		if err != nil {
			return err
		}
		if sent {
			continue
		}
		if announced == nil || announced.Compare(vv) != core.Equal {
			if err := ps.send(wire.TypeCaughtUp, wire.AppendVV(nil, vv)); err != nil {
				return err
			}
			announced = vv
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sendMissing sends one round of changes the peer lacks, origin by origin,
// and reports whether it sent anything.
func (ps *peerSession) sendMissing(ctx context.Context, vv core.VersionVector) (bool, error) {
	sent := false
	for _, origin := range vv.Devices() {
		have := ps.peerHasGet(origin)
		if vv[origin] <= have {
			continue
		}
		n, err := ps.sendOrigin(ctx, origin, have)
		if err != nil {
			return sent, err
		}
		sent = sent || n > 0
	}
	return sent, nil
}

// sendOrigin sends origin's changes after seq have, in frames of about
// batchBytes, stopping after about batchChanges so that other origins and
// new commits get their turn. The log is read before each frame is written,
// never while a read is open, so a slow peer holds no store resources.
func (ps *peerSession) sendOrigin(ctx context.Context, origin core.DeviceID, have uint64) (int, error) {
	total := 0
	for total < batchChanges {
		batch, err := ps.readBatch(ctx, origin, have)
		if err != nil || len(batch) == 0 {
			return total, err
		}
		if err := ps.send(wire.TypeChanges, wire.AppendChanges(nil, batch)); err != nil {
			return total, err
		}
		have = batch[len(batch)-1].Seq
		ps.stats.changesSent.Add(uint64(len(batch)))
		ps.peerHasRaise(origin, have)
		total += len(batch)
	}
	return total, nil
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
		next++
		batch = append(batch, c)
		size += len(c.Value) + len(c.Key) + len(c.Collection) + 64 + 40*len(c.Context)
		if size >= batchBytes {
			return errBatchFull
		}
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
