package policy

import (
	"time"

	"github.com/devicemesh/federation/core"
)

// Backlog is what one collection has waiting for a peer.
type Backlog struct {
	// Collection names the collection.
	Collection string
	// Changes and Bytes measure what waits; both zero means nothing.
	Changes int
	Bytes   int64
}

// pending reports whether anything waits.
func (b Backlog) pending() bool { return b.Changes > 0 || b.Bytes > 0 }

// Turn is a Queue's answer: which collection to send from next.
type Turn struct {
	// Collection is the collection to send from; empty when OK is false.
	Collection string
	// Priority is its priority towards the peer.
	Priority core.Priority
	// OK is false when nothing may go out now.
	OK bool
	// Wake is the earliest time a periodic backlog that is not due yet
	// falls due (the sender sets its timer to it); zero when none waits.
	Wake time.Time
}

// Queue orders one peer's sending among collections. Priorities are
// strict: while a collection of a higher priority has a due backlog,
// nothing of a lower priority is chosen, so a high-priority change queued
// behind any low-priority backlog goes out at the sender's next turn.
// Among collections of equal priority the bandwidth is shared by weight
// (Decision.Weight), fairly in bytes, by start-time fair queueing: each
// collection's virtual time is the bytes sent from it divided by its
// weight, the least one goes next, and a collection whose backlog appears
// starts at the least virtual time of its level, so it can neither
// monopolise the link with credit saved while idle nor be starved by a
// collection that was busy all along.
//
// A lower priority waits only while a higher one has a backlog: its wait
// is bounded by how fast the higher collections are written, which the
// policy table keeps small (profile, personality, the registry).
//
// Periodic collections are due once their interval has passed since their
// previous flush ended; a due flush stays open until its backlog is empty,
// and that moment starts the next interval. Local-only collections are
// never chosen.
//
// A Queue is pure (the time is an argument) and not safe for concurrent
// use: it belongs to one peer's send goroutine.
type Queue struct {
	p      *Planner
	peer   core.DeviceID
	vt     map[string]float64   // virtual time: bytes sent / weight
	active map[string]bool      // had a due backlog at the previous Next
	open   map[string]bool      // periodic flush in progress
	last   map[string]time.Time // end of the previous periodic flush
	// clock is each level's virtual clock: the virtual time of its last
	// choice, where a collection whose backlog appears starts (at least).
	clock map[core.Priority]float64
}

// Next chooses the collection to send from next, given every collection's
// backlog towards the peer (collections with nothing waiting may be left
// out). The sender sends one batch of it (at least one whole transaction),
// calls Sent, and asks again: a backlog that appeared meanwhile at a
// higher priority wins the next turn.
func (q *Queue) Next(now time.Time, backlogs []Backlog) Turn {
	var t Turn
	eligible := make([]Decision, 0, len(backlogs))
	seen := make(map[string]bool, len(backlogs))
	for _, b := range backlogs {
		if !b.pending() || seen[b.Collection] {
			continue
		}
		seen[b.Collection] = true
		d := q.p.Decide(q.peer, b.Collection)
		if !d.Admitted() {
			continue
		}
		if d.Mode == core.ModePeriodic && !q.open[d.Collection] {
			due, next := d.Due(q.last[d.Collection], now)
			if !due {
				if t.Wake.IsZero() || next.Before(t.Wake) {
					t.Wake = next
				}
				continue
			}
			q.open[d.Collection] = true
		}
		eligible = append(eligible, d)
	}
	// A periodic flush ends when its backlog is gone: the next interval
	// starts now.
	for c := range q.open {
		if !seen[c] {
			delete(q.open, c)
			q.last[c] = now
		}
	}
	if len(eligible) == 0 {
		clear(q.active)
		return t
	}
	top := eligible[0].Priority
	for _, d := range eligible[1:] {
		top = max(top, d.Priority)
	}
	// Collections newly backlogged start at their level's virtual clock,
	// or the least virtual time of the collections of their level that
	// were backlogged already if that is later: credit saved while idle
	// is never spent.
	floors := map[core.Priority]float64{}
	for _, d := range eligible {
		if !q.active[d.Collection] {
			continue
		}
		if f, ok := floors[d.Priority]; !ok || q.vt[d.Collection] < f {
			floors[d.Priority] = q.vt[d.Collection]
		}
	}
	var best *Decision
	for i := range eligible {
		d := &eligible[i]
		if f := max(floors[d.Priority], q.clock[d.Priority]); !q.active[d.Collection] && q.vt[d.Collection] < f {
			q.vt[d.Collection] = f
		}
		if d.Priority != top {
			continue
		}
		if best == nil || q.vt[d.Collection] < q.vt[best.Collection] ||
			(q.vt[d.Collection] == q.vt[best.Collection] && d.Collection < best.Collection) {
			best = d
		}
	}
	clear(q.active)
	for _, d := range eligible {
		q.active[d.Collection] = true
	}
	q.clock[top] = q.vt[best.Collection]
	t.Collection, t.Priority, t.OK = best.Collection, best.Priority, true
	return t
}

// Sent records that bytes of collection went out to the peer (a batch
// chosen by Next, or sent on another path), charging its fair share.
func (q *Queue) Sent(collection string, bytes int64) {
	w := q.p.Decide(q.peer, collection).Weight
	q.vt[collection] += float64(max(bytes, 1)) / float64(w)
}
