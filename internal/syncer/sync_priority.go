package syncer

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/wire"
)

// Overtaking: a high-priority transaction sent ahead of a low-priority
// backlog of the same origin, without breaking the per-origin order that
// version vectors rely on (the design is in package policy's doc).
//
// The sender streams each origin in sequence order as before. Between two
// frames of that stream, when the next change to go out is of a lower
// priority (Policy.Priority, a policy.Planner behind it) than a recently
// committed transaction that the peer lacks and that lies further on in
// the log (Urgent), that whole transaction goes out first, alone, in a
// Priority frame, and its range is remembered (prioState.ahead): when the
// in-order stream reaches it, the stream skips it, so it travels once. The
// receiver applies a Priority transaction's records at once, as record
// versions merged by causal context (Replica.ApplyRecords, like a repair's
// records: the host sees them now), without a changelog entry and without
// raising its version vector; it holds the transaction (prioState.held)
// until the in-order stream reaches the sequence just before it, and then
// commits it in its place in the changelog (Replica.ApplyRemote), where
// merging it again changes no record. The receiver's version vector
// therefore stays contiguous per origin; a session that ends first loses
// only the held copy, and the next one sends the transaction again in
// order.

// Overtaking limits.
const (
	// MaxUrgent bounds the recently committed top-priority changes an
	// UrgentIndex remembers for the senders (the oldest are forgotten:
	// they then wait for the in-order stream).
	MaxUrgent = 1024
	// maxAhead bounds the transactions a sender has sent ahead of its
	// in-order stream and not yet reached.
	maxAhead = 256
	// maxHeld bounds the transactions a receiver holds for the in-order
	// stream, and maxHeldBytes their size; a peer that sends more loses
	// its session.
	maxHeld      = 1024
	maxHeldBytes = 64 << 20
	// maxOvertakeTxn is the largest transaction (in changes) sent ahead.
	maxOvertakeTxn = 1024
)

// OvertakeFloor is the priority a change must have to overtake a backlog:
// an Urgent source need only remember changes of collections at or above
// it.
const OvertakeFloor = core.PriorityHigh

// Dot names one change: its origin and sequence number.
type Dot struct {
	Origin core.DeviceID
	Seq    uint64
}

// Urgent tells a Session which recent commits may overtake a backlog.
type Urgent interface {
	// Urgent returns the dots of the committed changes of collections of
	// priority OvertakeFloor or above noted after the first from (a count
	// of every dot ever noted: 0 for all that are still remembered),
	// oldest first, and the count to pass next time. A session considers
	// each dot once. It does not block, is safe for concurrent use, and
	// the slice is the caller's.
	Urgent(from uint64) (dots []Dot, next uint64)
}

// UrgentIndex is an Urgent fed by a commit observer (Note), bounded to
// the MaxUrgent latest dots (older ones wait for the in-order stream).
// Safe for concurrent use; the zero value is empty.
type UrgentIndex struct {
	mu    sync.Mutex
	dots  []Dot  // the latest, oldest first
	total uint64 // every dot ever noted
}

// Note remembers ds, the top-priority changes of one commit, in order.
func (h *UrgentIndex) Note(ds ...Dot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dots = append(h.dots, ds...)
	h.total += uint64(len(ds))
	if over := len(h.dots) - MaxUrgent; over > 0 {
		h.dots = slices.Delete(h.dots, 0, over)
	}
}

// Urgent returns the dots noted after the first from that are still
// remembered, and the count of every dot noted.
func (h *UrgentIndex) Urgent(from uint64) ([]Dot, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if from >= h.total {
		return nil, h.total
	}
	oldest := h.total - uint64(len(h.dots)) // the count before h.dots[0]
	return slices.Clone(h.dots[max(from, oldest)-oldest:]), h.total
}

// span is a transaction's sequence range.
type span struct{ first, last uint64 }

// prioState is one session's overtaking state.
type prioState struct {
	// Send goroutine: the transactions sent ahead, per origin, in
	// sequence order, and the count of urgent dots considered
	// (Urgent.Urgent's from).
	ahead map[core.DeviceID][]span
	seen  uint64
	// Receive goroutine: the transactions received ahead and applied as
	// records, waiting for their place in the changelog, in sequence
	// order, and their size.
	held      map[core.DeviceID][][]core.Change
	heldCount int
	heldBytes int
}

// skipAhead trims a batch read from the log at the first change sent
// ahead. When the batch starts with such a transaction, the peer has it:
// the stream moves past it and skip is set (nothing to send from batch).
func (ps *Session) skipAhead(origin core.DeviceID, batch []core.Change) (_ []core.Change, skip bool) {
	spans := ps.prio.ahead[origin]
	if len(spans) == 0 {
		return batch, false
	}
	if s := spans[0]; batch[0].Seq >= s.first {
		ps.peerHasRaise(origin, s.last)
		if len(spans) == 1 {
			delete(ps.prio.ahead, origin)
		} else {
			ps.prio.ahead[origin] = spans[1:]
		}
		return nil, true
	}
	for i, c := range batch {
		if c.Seq >= spans[0].first {
			return batch[:i], false
		}
	}
	return batch, false
}

// overtake sends ahead, each in a Priority frame, the recently committed
// transactions of a priority above next's that the peer lacks and may
// receive now (send goroutine only). Each urgent dot is considered once
// (as the stream's next change or later), and a transaction once however
// many dots it has.
func (ps *Session) overtake(ctx context.Context, next core.Change) error {
	floor := ps.cfg.Policy.Priority(ps.peer, next.Collection)
	if floor >= OvertakeFloor {
		return nil // nothing overtakes it: keep the dots for a backlog below
	}
	dots, seen := ps.cfg.Urgent.Urgent(ps.prio.seen)
	ps.prio.seen = seen
	var done span // the transaction of the previous dot
	var doneOrigin core.DeviceID
	for _, d := range dots {
		if d.Origin == doneOrigin && d.Seq >= done.first && d.Seq <= done.last {
			continue
		}
		if d.Seq <= ps.peerHasGet(d.Origin)+1 || ps.sentAhead(d) {
			continue
		}
		txn, err := ps.readTxn(ctx, d)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			continue // compacted or torn: the stream (or a repair) sees to it
		}
		if len(txn) == 0 {
			continue
		}
		done, doneOrigin = span{txn[0].TxnFirst, txn[len(txn)-1].Seq}, txn[0].Origin
		if !ps.mayOvertake(txn, floor) {
			continue
		}
		if err := ps.sendChanges(wire.TypePriority, txn); err != nil {
			return err
		}
		ps.stats.changesSent.Add(uint64(len(txn)))
		origin := txn[0].Origin
		s := span{txn[0].TxnFirst, txn[len(txn)-1].Seq}
		if ps.prio.ahead == nil {
			ps.prio.ahead = map[core.DeviceID][]span{}
		}
		spans := append(ps.prio.ahead[origin], s)
		slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
		ps.prio.ahead[origin] = spans
		ps.sentAudit.add(context.Background(), 1, int64(len(txn)), 0)
	}
	return nil
}

// sentAhead reports whether d's transaction was sent ahead already.
func (ps *Session) sentAhead(d Dot) bool {
	for _, s := range ps.prio.ahead[d.Origin] {
		if d.Seq >= s.first && d.Seq <= s.last {
			return true
		}
	}
	return false
}

// readTxn reads from the log the whole transaction holding d, or nothing
// when it is too large to send ahead.
func (ps *Session) readTxn(ctx context.Context, d Dot) ([]core.Change, error) {
	var c0 core.Change
	err := ps.r.Changes(ctx, d.Origin, d.Seq-1, 1, func(c core.Change) error { c0 = c; return nil })
	if err != nil || c0.Seq != d.Seq || c0.TxnLen == 0 || c0.TxnLen > maxOvertakeTxn {
		return nil, err
	}
	var txn []core.Change
	err = ps.r.Changes(ctx, d.Origin, c0.TxnFirst-1, int(c0.TxnLen), func(c core.Change) error {
		if c.Seq != c0.TxnFirst+uint64(len(txn)) || c.TxnFirst != c0.TxnFirst {
			return fmt.Errorf("sync send %s: %w: transaction at %d torn", d.Origin.Short(), ErrGap, c0.TxnFirst)
		}
		txn = append(txn, c)
		return nil
	})
	if err != nil || len(txn) != int(c0.TxnLen) {
		return nil, err
	}
	return txn, nil
}

// mayOvertake reports whether txn may go out ahead of the in-order stream
// whose next change has priority floor: it is of a higher priority, not
// the peer's own nor one it receives from its origin device, neither held
// by the peer nor next in line for it (the stream sends it now anyway) nor
// sent ahead already, and everything it depends on of other origins is at
// the peer, as causalCut demands of the stream.
func (ps *Session) mayOvertake(txn []core.Change, floor core.Priority) bool {
	origin, first := txn[0].Origin, txn[0].TxnFirst
	device := ps.r.OriginDevice(origin)
	if device == ps.peer {
		return false
	}
	ps.mu.Lock()
	direct := ps.direct[device]
	ps.mu.Unlock()
	if direct && device != ps.cfg.Self {
		return false // the peer gets it from its origin (not mayForward: no stall clock started here)
	}
	top := core.PriorityNone
	for _, c := range txn {
		if !ps.cfg.Policy.Admit(ps.peer, c.Collection) {
			return false
		}
		top = max(top, ps.cfg.Policy.Priority(ps.peer, c.Collection))
	}
	if top <= floor || ps.holdsPeriodic(txn, ps.sched.Now()) { // a periodic batch waits (sync_batch.go)
		return false
	}
	n := 0
	for _, s := range ps.prio.ahead {
		n += len(s)
	}
	if n >= maxAhead {
		return false
	}
	for _, s := range ps.prio.ahead[origin] {
		if s.first == first {
			return false
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if first <= ps.peerHas[origin]+1 {
		return false
	}
	for _, c := range txn {
		for d, need := range c.Context {
			if d == origin {
				continue
			}
			if need > ps.peerHas[d] && (need <= ps.startVV[d] || ps.r.OriginDevice(d) != ps.peer) {
				return false
			}
			if o, open := ps.open[d]; open && need >= o.first {
				return false
			}
		}
	}
	return true
}

// receivePriority takes a transaction sent ahead of the in-order stream
// (receive goroutine only): applied at once when it is next in line,
// otherwise applied as record versions and held for its place in the
// changelog (splice).
func (ps *Session) receivePriority(ctx context.Context, payload []byte) error {
	t, err := wire.DecodeChanges(payload)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	if err := replica.Txn(t).Validate(); err != nil {
		return fmt.Errorf("sync receive priority: %w", err)
	}
	ps.stats.changesRecv.Add(uint64(len(t)))
	origin, first, last := t[0].Origin, t[0].TxnFirst, t[len(t)-1].Seq
	ps.peerHasRaise(origin, last) // the peer holds it: never send it back
	have, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	switch {
	case last <= have[origin]:
		ps.stats.redundant.Add(uint64(len(t)))
		return nil
	case first == have[origin]+1:
		return ps.applyReady(ctx, [][]core.Change{t}, len(payload))
	}
	for _, h := range ps.prio.held[origin] {
		if h[0].TxnFirst == first && len(h) == len(t) {
			ps.stats.redundant.Add(uint64(len(t))) // the same frame again
			return nil
		}
		if first <= h[len(h)-1].Seq && h[0].TxnFirst <= last {
			return fmt.Errorf("%w: priority transaction %d of %s overlaps one held", core.ErrProtocol, first, origin.Short())
		}
	}
	size := 0
	for _, c := range t {
		size += changeSize(c)
	}
	if ps.prio.heldCount >= maxHeld || ps.prio.heldBytes+size > maxHeldBytes {
		return fmt.Errorf("%w: more than %d transactions or %d bytes sent ahead", ErrPendingTooLarge, maxHeld, maxHeldBytes)
	}
	if err := ps.r.ApplyRecords(ctx, t); err != nil {
		return fmt.Errorf("sync apply priority from %s: %w", ps.peer.Short(), err)
	}
	if ps.prio.held == nil {
		ps.prio.held = map[core.DeviceID][][]core.Change{}
	}
	held := append(ps.prio.held[origin], t)
	slices.SortFunc(held, func(a, b []core.Change) int { return cmp.Compare(a[0].TxnFirst, b[0].TxnFirst) })
	ps.prio.held[origin] = held
	ps.prio.heldCount++
	ps.prio.heldBytes += size
	return nil
}

// splice puts the held transactions into ready where the in-order stream
// reaches them (the sender skips them in the stream): before the first
// ready transaction of their origin that follows them, or after the last
// one that they follow. Held transactions the store holds by now (from
// another peer, or a repair) are dropped. have is the store's version
// vector (receive goroutine only).
func (ps *Session) splice(ready [][]core.Change, have core.VersionVector) [][]core.Change {
	if ps.prio.heldCount == 0 {
		return ready
	}
	next := map[core.DeviceID]uint64{}
	at := func(o core.DeviceID) uint64 {
		if v, ok := next[o]; ok {
			return v
		}
		return have[o]
	}
	out := make([][]core.Change, 0, len(ready)+1)
	emit := func(o core.DeviceID) {
		for h := ps.prio.held[o]; len(h) > 0; h = ps.prio.held[o] {
			t := h[0]
			first, last := t[0].TxnFirst, t[len(t)-1].Seq
			if first > at(o)+1 {
				return
			}
			if last > at(o) {
				out = append(out, t)
				next[o] = last
			}
			ps.dropHeld(o)
		}
	}
	for _, t := range ready {
		o := t[0].Origin
		emit(o)
		out = append(out, t)
		next[o] = max(at(o), t[len(t)-1].Seq)
	}
	for o := range ps.prio.held {
		emit(o)
	}
	return out
}

// dropHeld forgets origin's first held transaction.
func (ps *Session) dropHeld(o core.DeviceID) {
	h := ps.prio.held[o]
	for _, c := range h[0] {
		ps.prio.heldBytes -= changeSize(c)
	}
	ps.prio.heldCount--
	if len(h) == 1 {
		delete(ps.prio.held, o)
	} else {
		ps.prio.held[o] = h[1:]
	}
}

// releaseHeld commits the held transactions that the store's version
// vector reaches by now (the changes before them came whole from another
// peer), before a CaughtUp is checked.
func (ps *Session) releaseHeld(ctx context.Context) error {
	if ps.prio.heldCount == 0 {
		return nil
	}
	have, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	if ready := ps.splice(nil, have); len(ready) > 0 {
		return ps.applyReady(ctx, ready, 0)
	}
	return nil
}
