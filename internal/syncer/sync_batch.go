package syncer

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/policy"
)

// Periodic batches: the changes of a collection whose mode towards the
// peer is periodic (core.ModePeriodic) wait, and go out together once per
// interval, on Config.Scheduler's time.
//
// Each origin's changes still travel in sequence order (the peer's version
// vector must stay contiguous), so the in-order stream stops before the
// first transaction that touches a periodic collection not due yet
// (holdPeriodic), and says so as a waiting sender does (its CaughtUp
// claims only what it sent). A timer wakes the sender when the interval
// has passed; the stream then resumes, and every change of the collection
// written meanwhile goes out in that one flush (in as few Changes frames
// as their size allows: batchBytes each). The flush ends when the sender
// has nothing more to send; the next interval starts then
// (policy.Decision.Due). The first session with a peer since the node
// started begins with every periodic collection due (what the peer lacks
// on connecting is not held back); a later one goes on with the
// intervals the previous one left (Config.Batches), so a connection that
// comes and goes does not flush early.
//
// Transactions of other collections committed behind a held one do not
// wait for the flush: they go ahead of the stream in Priority frames
// (sync_priority.go), as a high-priority change overtakes a backlog, at
// most maxAhead transactions of at most maxAheadTxnBytes each at a time;
// beyond that they wait for the flush.

// Periodic is the part of Policy that batches: a Policy that implements
// it may make a collection periodic towards a peer. Without it nothing is
// held back.
type Periodic interface {
	// Interval returns the batching period of collection towards peer, 0
	// when its changes travel as they are written.
	Interval(peer core.DeviceID, collection string) time.Duration
}

// maxAheadTxnBytes bounds a transaction sent ahead of a held periodic
// batch: with maxAhead of them, the receiver holds at most half of
// maxHeldBytes for this reason.
const maxAheadTxnBytes = maxHeldBytes / 2 / maxAhead

// batchState is one session's periodic batching (send goroutine only,
// except the timer's poke).
type batchState struct {
	last map[string]time.Time // end of the previous flush, per collection
	open map[string]bool      // flushes in progress
	// loaded is set once the state was seeded from Config.Batches.
	loaded bool
	// since is the end of the session's first round that sent nothing
	// (zero until then): the first interval of a collection not flushed
	// yet starts there.
	since time.Time
	timer core.Timer // wakes the sender when a batch falls due
	wake  time.Time  // when timer fires (zero: not armed)
	// held is the first sequence number held back per origin in the
	// current round (the sender looks past it for transactions that may
	// go ahead).
	held map[core.DeviceID]uint64
}

// interval returns collection's batching period towards the peer (0: not
// periodic).
func (ps *Session) interval(collection string) time.Duration {
	p, ok := ps.cfg.Policy.(Periodic)
	if !ok {
		return 0
	}
	return p.Interval(ps.peer, collection)
}

// holdPeriodic trims batch, read from origin's log, before the first
// transaction that touches a periodic collection not due yet, arming the
// sender's timer for when it falls due; held reports a trim. A
// transaction sent in part is never held (the peer's assembler must see
// it whole).
func (ps *Session) holdPeriodic(origin core.DeviceID, batch []core.Change) (_ []core.Change, held bool) {
	if _, ok := ps.cfg.Policy.(Periodic); !ok || len(batch) == 0 {
		return batch, false
	}
	b := ps.batchState()
	now := ps.sched.Now()
	for i, c := range batch {
		iv := ps.interval(c.Collection)
		if iv <= 0 || b.open[c.Collection] {
			continue
		}
		if o, ok := ps.open[origin]; ok && c.TxnFirst <= o.sent {
			continue
		}
		due, next := policy.Decision{Mode: core.ModePeriodic, Interval: iv}.Due(b.lastFlush(c.Collection), now)
		if due {
			if b.open == nil {
				b.open = map[string]bool{}
			}
			b.open[c.Collection] = true
			continue
		}
		ps.armBatch(next)
		ps.progressHeld(c.Collection)
		j := i
		for j > 0 && batch[j-1].Seq >= c.TxnFirst {
			j--
		}
		if b.held == nil {
			b.held = map[core.DeviceID]uint64{}
		}
		if h, ok := b.held[origin]; !ok || c.TxnFirst < h {
			b.held[origin] = c.TxnFirst
		}
		return batch[:j], true
	}
	return batch, false
}

// Batches remembers, per peer, when each periodic collection's previous
// flush ended and when the first session's catch-up did, across sessions
// (Config.Batches): a session that restarts does not flush early. Safe
// for concurrent use; the zero value is empty.
type Batches struct {
	mu sync.Mutex
	m  map[core.DeviceID]batchMemory
}

type batchMemory struct {
	since time.Time
	last  map[string]time.Time
}

// load seeds a session's batch state with what the book remembers of
// peer.
func (bs *Batches) load(peer core.DeviceID, b *batchState) {
	if bs == nil {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	m, ok := bs.m[peer]
	if !ok {
		return
	}
	b.since, b.last = m.since, maps.Clone(m.last)
}

// save remembers a session's batch state for peer.
func (bs *Batches) save(peer core.DeviceID, b *batchState) {
	if bs == nil {
		return
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[core.DeviceID]batchMemory{}
	}
	bs.m[peer] = batchMemory{since: b.since, last: maps.Clone(b.last)}
}

// lastFlush returns the end of collection's previous flush: the end of
// the session's catch-up when it had none (zero during the catch-up:
// due).
func (b *batchState) lastFlush(collection string) time.Time {
	if t, ok := b.last[collection]; ok {
		return t
	}
	return b.since
}

// batchState returns the session's batch state, seeded from
// Config.Batches on first use.
func (ps *Session) batchState() *batchState {
	b := &ps.batch
	if !b.loaded {
		b.loaded = true
		ps.cfg.Batches.load(ps.peer, b)
	}
	return b
}

// armBatch sets the sender's wake-up for at (the earliest batch due).
func (ps *Session) armBatch(at time.Time) {
	b := &ps.batch
	if !b.wake.IsZero() && !at.Before(b.wake) {
		return
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	b.wake = at
	b.timer = ps.sched.AfterFunc(at.Sub(ps.sched.Now()), ps.poke)
}

// endRound is called by the send loop after each round (vv is what this
// device held; sent and waiting as sendMissing says): a round that sent
// nothing ends the flushes in progress (their next interval starts now),
// and forgets the hold points; a timer that fired is disarmed.
func (ps *Session) endRound(ctx context.Context, vv core.VersionVector, sent, waiting bool) {
	ps.progressRound(ctx, vv, sent, waiting) // progress.go
	b := ps.batchState()
	now := ps.sched.Now()
	if !b.wake.IsZero() && !now.Before(b.wake) {
		b.wake = time.Time{}
	}
	clear(b.held)
	if sent {
		return
	}
	changed := len(b.open) > 0
	if b.since.IsZero() {
		b.since, changed = now, true
	}
	defer func() {
		if changed {
			ps.cfg.Batches.save(ps.peer, b)
		}
	}()
	if b.last == nil {
		b.last = map[string]time.Time{}
	}
	for c := range b.open {
		b.last[c] = now
	}
	clear(b.open)
}

// stopBatch stops the batch timer and the progress census (the session
// ends).
func (ps *Session) stopBatch() {
	ps.stopProgress()
	if ps.batch.timer != nil {
		ps.batch.timer.Stop()
	}
}

// sendPastHeld sends ahead of the in-order stream, each in a Priority
// frame, the transactions of origin's log after its hold point that touch
// no held periodic collection and may go ahead (mayOvertake), reading at
// most batchChanges changes; it returns how many changes it sent.
func (ps *Session) sendPastHeld(ctx context.Context, origin core.DeviceID, upTo uint64) (int, error) {
	from, ok := ps.batch.held[origin]
	if !ok {
		return 0, nil
	}
	var txns [][]core.Change
	var cur []core.Change
	size := 0
	err := ps.r.Changes(ctx, origin, from-1, batchChanges, func(c core.Change) error {
		if c.Seq > upTo {
			return errBatchFull
		}
		if len(cur) > 0 && c.TxnFirst != cur[0].TxnFirst {
			cur, size = nil, 0
		}
		if len(cur) == 0 && c.Seq != c.TxnFirst {
			return nil // the tail of a transaction begun before from
		}
		cur = append(cur, c)
		size += changeSize(c)
		if len(cur) == int(c.TxnLen) && size <= maxAheadTxnBytes {
			txns = append(txns, cur)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return 0, err
	}
	now := ps.sched.Now()
	n := 0
	for _, txn := range txns {
		if ps.holdsPeriodic(txn, now) || ps.sentAhead(Dot{Origin: origin, Seq: txn[0].Seq}) {
			continue
		}
		if !ps.mayOvertake(txn, core.PriorityNone-1) {
			continue
		}
		if err := ps.sendChanges(wire.TypePriority, txn); err != nil {
			return n, err
		}
		ps.stats.changesSent.Add(uint64(len(txn)))
		ps.noteAhead(origin, span{txn[0].TxnFirst, txn[len(txn)-1].Seq})
		ps.sentAudit.add(context.Background(), 1, int64(len(txn)), 0)
		n += len(txn)
	}
	return n, nil
}

// holdsPeriodic reports whether txn touches a periodic collection that is
// not due (nor being flushed) at now.
func (ps *Session) holdsPeriodic(txn []core.Change, now time.Time) bool {
	if _, ok := ps.cfg.Policy.(Periodic); !ok {
		return false
	}
	b := ps.batchState()
	for _, c := range txn {
		iv := ps.interval(c.Collection)
		if iv <= 0 || b.open[c.Collection] {
			continue
		}
		if due, _ := (policy.Decision{Mode: core.ModePeriodic, Interval: iv}).Due(b.lastFlush(c.Collection), now); !due {
			return true
		}
	}
	return false
}

// noteAhead remembers a transaction sent ahead of origin's stream.
func (ps *Session) noteAhead(origin core.DeviceID, s span) {
	if ps.prio.ahead == nil {
		ps.prio.ahead = map[core.DeviceID][]span{}
	}
	spans := append(ps.prio.ahead[origin], s)
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	ps.prio.ahead[origin] = spans
}
