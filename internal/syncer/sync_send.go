package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// sendLoop streams to the peer every change it lacks, then waits for new
// commits and streams those, until ctx ends. Memory stays bounded: changes
// are read from the log in batches and written as they are read, and the
// stream's flow control holds the loop back when the peer is slow.
func (ps *Session) sendLoop(ctx context.Context) error {
	if err := ps.awaitRoutes(ctx); err != nil {
		return err
	}
	defer ps.stopBatch()
	var announced core.VersionVector
	ps.mu.Lock()
	said := ps.startVV // the last version vector told the peer (Hello, Ack)
	ps.mu.Unlock()
	repairs := 0 // repairs since the last round that sent changes normally
	for {
		wake := ps.r.Changed() // before reading state, so no commit is missed
		wanted := ps.wantedGrew()
		if err := ps.serveControl(ctx); err != nil {
			return err
		}
		if err := ps.askWanted(); err != nil {
			return err
		}
		vv, err := ps.r.VersionVector(ctx)
		if err != nil {
			return fmt.Errorf("sync send: %w", err)
		}
		sent, waiting, err := ps.sendMissing(ctx, vv)
		if errors.Is(err, ErrGap) {
			// Our log cannot bring the peer up to date: repair by Merkle
			// descent, then resume deltas from what the repair covered.
			ps.cfg.Log.Info("changelog cannot serve peer; repairing", "peer", ps.peer.Short(), "err", err)
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
		ps.endRound(ctx, vv, sent, waiting) // periodic batches and progress (sync_batch.go)
		// Say what we hold when the peer cannot know it otherwise: changes
		// of origins it leaves to other devices, which may hold up its
		// own sending to us (a change of its that depends on them), or,
		// while we cannot claim CaughtUp, anything new.
		if (waiting && said.Compare(vv) != core.Equal) || ps.relayedNews(vv, said) {
			if err := ps.send(wire.TypeAck, wire.AppendVV(nil, vv)); err != nil {
				return err
			}
			said = vv
		}
		if sent {
			continue
		}
		if waiting {
			// Claim what we did send, without roots (our records hold more
			// than the claim): the peer checks that it all arrived.
			if claim := ps.sentClaim(vv); announced == nil || announced.Compare(claim) != core.Equal {
				if err := ps.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, claim), nil)); err != nil {
					return err
				}
				announced = claim
			}
		} else if announced == nil || announced.Compare(vv) != core.Equal {
			snap, roots, err := ps.r.Snapshot(ctx)
			if err != nil {
				return err
			}
			if snap.Compare(vv) != core.Equal {
				continue // committed meanwhile: send that first
			}
			if err := ps.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, vv), roots)); err != nil {
				return err
			}
			announced, said = vv, vv
		}
		beat, release := core.Wait(ps.sched, heartbeat)
		select {
		case <-wake:
		case <-wanted:
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
		case <-beat:
			// Repeat the announcement now and then: it lets the peer notice
			// frames that never arrived and a session that went quiet. The
			// Direct set and our Ack too: a peer that missed them could
			// wait for them forever.
			announced = nil
			if waiting {
				said = core.VersionVector{}
			}
			ps.routesDirty.Store(true)
		}
		release()
	}
}

// awaitRoutes waits for the peer's hello and its first Direct frame. Our
// own Direct frame may have been lost on the way, and the peer, waiting for
// it just as we wait for its own, would then send nothing either: repeat
// ours every heartbeat until the peer's arrives.
func (ps *Session) awaitRoutes(ctx context.Context) error {
	select {
	case <-ps.hello:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		beat, release := core.Wait(ps.sched, heartbeat)
		select {
		case <-ps.routed:
			release()
			return nil
		case <-ctx.Done():
			release()
			return ctx.Err()
		case <-beat:
			if err := ps.sendDirect(); err != nil {
				return err
			}
		}
	}
}

// sendMissing sends one round of changes the peer lacks, origin by origin,
// and reports whether it sent anything, and whether it holds changes the
// peer lacks that it leaves to another device (waiting: the peer receives
// those origins from their own devices, or a change depends on them).
func (ps *Session) sendMissing(ctx context.Context, vv core.VersionVector) (sent, waiting bool, err error) {
	for _, origin := range vv.Devices() {
		upTo := ps.sendable(origin, vv[origin])
		if upTo <= ps.peerHasGet(origin) && !ps.isOpen(origin) {
			delete(ps.stalls, origin) // the peer is up to date on origin
			continue
		}
		if !ps.mayForward(origin) && !ps.isOpen(origin) {
			waiting = true
			continue
		}
		n, blocked, err := ps.sendOrigin(ctx, origin, upTo, 0)
		sent = sent || n > 0
		waiting = waiting || blocked
		if err != nil {
			return sent, waiting, err
		}
	}
	return sent, waiting, nil
}

// sentClaim is what a waiting sender can claim to have sent: per origin,
// what the peer holds as far as we know (what we sent, what it announced),
// short of a transaction sent in part.
func (ps *Session) sentClaim(vv core.VersionVector) core.VersionVector {
	claim := make(core.VersionVector, len(vv))
	ps.mu.Lock()
	for d, n := range vv {
		claim[d] = min(n, ps.peerHas[d])
	}
	ps.mu.Unlock()
	for d, o := range ps.open {
		claim[d] = min(claim[d], o.first-1)
	}
	return claim
}

// relayedNews reports whether vv holds changes, beyond said, of the
// origins this device receives directly and the peer therefore expects
// from them, not from us.
func (ps *Session) relayedNews(vv, said core.VersionVector) bool {
	direct := ps.links.Direct()
	for origin, n := range vv {
		if n > said[origin] && direct[ps.r.OriginDevice(origin)] > 0 {
			return true
		}
	}
	return false
}

// sendable caps what may be sent of origin: of the peer's own changes
// (under any of its replica incarnations), only those this device held at
// the start of the session (the peer lacks them only when restored from an
// older copy); it holds every later one.
func (ps *Session) sendable(origin core.DeviceID, upTo uint64) uint64 {
	if ps.r.OriginDevice(origin) != ps.peer {
		return upTo
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return min(upTo, ps.startVV[origin])
}

// directPatience is how long a sender leaves an origin to the peer's
// direct link while the peer makes no progress on it at all: then it
// forwards the changes itself (the origin device may have lost them, say
// restored from an older copy, or its link may be stuck).
const directPatience = 10 * time.Second

// mayForward reports whether this device sends origin's changes to the
// peer: its own always, others unless the peer receives them from the
// origin device itself and has been making progress on them (send
// goroutine only).
func (ps *Session) mayForward(origin core.DeviceID) bool {
	device := ps.r.OriginDevice(origin) // origins are replica incarnations
	if device == ps.cfg.Self {
		return true
	}
	ps.mu.Lock()
	direct, has := ps.direct[device], ps.peerHas[origin]
	ps.mu.Unlock()
	if !direct {
		return true
	}
	st, ok := ps.stalls[origin]
	if !ok || st.has != has {
		ps.stalls[origin] = stall{has: has, since: ps.sched.Now()}
		return false
	}
	return ps.sched.Now().Sub(st.since) > directPatience
}

// stall is the peer's progress on an origin left to its direct link: what
// it held, since when.
type stall struct {
	has   uint64
	since time.Time
}

// isOpen reports whether a transaction of origin is sent in part.
func (ps *Session) isOpen(origin core.DeviceID) bool {
	_, ok := ps.open[origin]
	return ok
}

// sendOrigin sends origin's changes that the peer lacks, up to sequence
// upTo, in frames of about batchBytes, stopping after about
// batchChanges so that other origins and new commits get their turn. A
// transaction sent in part is finished first.
//
// Delivery is causal: before a change goes out, every change in its causal
// context that the peer lacks is sent first (recursively, origin by
// origin). So a device never holds a change without what it depends on, and
// a local write's context (the device's version vector) always covers the
// versions it overwrote. A dependency the peer receives from another
// device is waited for (blocked: nothing more of origin goes out now). The
// log is read before each frame is written, never while a read is open, so
// a slow peer holds no store resources.
func (ps *Session) sendOrigin(ctx context.Context, origin core.DeviceID, upTo uint64, depth int) (total int, blocked bool, err error) {
	if depth > maxCausalDepth {
		return 0, false, fmt.Errorf("sync send: causal dependencies nest deeper than %d", maxCausalDepth)
	}
	for total < batchChanges || ps.isOpen(origin) {
		from, limit := ps.peerHasGet(origin), upTo
		if o, ok := ps.open[origin]; ok {
			from, limit = o.sent, o.end
		}
		if from >= limit {
			break
		}
		batch, err := ps.readBatch(ctx, origin, from, ps.pacing.limit())
		if err != nil {
			return total, false, err
		}
		if len(batch) == 0 {
			return total, false, fmt.Errorf("sync send %s: %w: log holds nothing after %d, peer needs up to %d", origin.Short(), ErrGap, from, limit)
		}
		batch = ps.paceCut(batch) // a paced stream sends short frames (sync_pace.go)
		// Overtake before trimming: what goes ahead now may lie in this
		// very batch (sync_priority.go).
		if err := ps.overtake(ctx, batch[0]); err != nil {
			return total, false, err
		}
		var skip bool
		if batch, skip = ps.skipAhead(origin, batch); skip {
			continue // sent ahead
		}
		var held bool
		if batch, held = ps.holdPeriodic(origin, batch); held && len(batch) == 0 {
			n, err := ps.sendPastHeld(ctx, origin, limit) // sync_batch.go
			return total + n, true, err
		}
		cut, dep, need := ps.causalCut(batch, limit)
		if restart, err := ps.pace(ctx, batch[:cut]); err != nil || restart {
			if err != nil {
				return total, false, err
			}
			continue // overtake first: read the batch again
		}
		if err := ps.sendBatch(origin, batch[:cut]); err != nil {
			return total, false, err
		}
		if err := ps.serveControl(ctx); err != nil {
			return total, false, err
		}
		total += cut
		if dep.IsZero() {
			if cut < len(batch) {
				break // reached limit
			}
			continue
		}
		if !ps.mayForward(dep) {
			return total, true, nil
		}
		for ps.peerHasGet(dep) < need {
			n, blocked, err := ps.sendOrigin(ctx, dep, need, depth+1)
			total += n
			if err != nil || blocked {
				return total, blocked, err
			}
			if n == 0 {
				return total, false, fmt.Errorf("sync send %s: %w: dependency %s:%d is not in the log", origin.Short(), ErrGap, dep.Short(), need)
			}
		}
	}
	return total, false, nil
}

// maxCausalDepth bounds the recursion of sendOrigin: a chain of
// dependencies visits each origin at most once per level, and a mesh has
// few devices.
const maxCausalDepth = 64

// causalCut returns how many leading changes of batch may go out now: it
// stops before the first change beyond upTo, or the first whose causal
// context names a change of another origin the peer lacks (returned as dep,
// need). The peer holds every change of its own written during the
// session.
func (ps *Session) causalCut(batch []core.Change, upTo uint64) (cut int, dep core.DeviceID, need uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, c := range batch {
		if c.Seq > upTo {
			return i, core.DeviceID{}, 0
		}
		for d, n := range c.Context {
			if d != c.Origin && n > ps.peerHas[d] && (n <= ps.startVV[d] || ps.r.OriginDevice(d) != ps.peer) {
				return i, d, n
			}
		}
	}
	return len(batch), core.DeviceID{}, 0
}

// sendBatch writes one Changes frame and records that the peer now has it.
func (ps *Session) sendBatch(origin core.DeviceID, batch []core.Change) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ps.sendChanges(wire.TypeChanges, batch); err != nil {
		return err
	}
	ps.stats.changesSent.Add(uint64(len(batch)))
	if ps.r.OriginDevice(origin) == ps.peer {
		ps.stats.echoes.Add(uint64(len(batch)))
	}
	last := batch[len(batch)-1]
	if end := last.TxnFirst + uint64(last.TxnLen) - 1; last.Seq < end {
		ps.open[origin] = openTxn{first: last.TxnFirst, sent: last.Seq, end: end}
	} else {
		delete(ps.open, origin)
	}
	ps.peerHasRaise(origin, last.Seq)
	ps.paceSent(origin, batch)
	ps.sentAudit.add(context.Background(), 0, int64(len(batch)), 0)
	return nil
}

// ErrGap reports that this device's changelog cannot bring the peer up to
// date (compacted, or restored from an older copy): the session repairs by
// Merkle descent instead.
var ErrGap = errors.New("changelog leaves a gap")

// errBatchFull stops a changelog read once a frame's worth is collected.
var errBatchFull = errors.New("batch full")

// readBatch reads up to a frame's worth of origin's changes after have,
// at most n.
func (ps *Session) readBatch(ctx context.Context, origin core.DeviceID, have uint64, n int) ([]core.Change, error) {
	var batch []core.Change
	size := 0
	next := have + 1
	err := ps.r.Changes(ctx, origin, have, n, func(c core.Change) error {
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

func (ps *Session) peerHasGet(d core.DeviceID) uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.peerHas[d]
}

func (ps *Session) peerHasRaise(d core.DeviceID, seq uint64) {
	ps.mu.Lock()
	if seq > ps.peerHas[d] {
		ps.peerHas[d] = seq
	}
	ps.mu.Unlock()
}
