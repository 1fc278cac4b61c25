package policy

import (
	"sort"
	"time"

	"github.com/devicemesh/federation/core"
)

// DefaultInterval is the batching period of a periodic collection whose
// policy gives none.
const DefaultInterval = time.Minute

// Carry says what of a collection's changes travels to a peer.
type Carry int

const (
	// CarryNothing: the changes stay on the device; the peer never learns
	// they exist (local-only).
	CarryNothing Carry = iota
	// CarryValue: every change travels whole.
	CarryValue
	// CarryDigest: a change travels as a stub (core.Record.AsStub): its
	// key, version, size and value digest, without the value, which the
	// peer fetches when it wants it (see the package documentation).
	CarryDigest
)

// String names the carry.
func (c Carry) String() string {
	switch c {
	case CarryNothing:
		return "nothing"
	case CarryValue:
		return "value"
	case CarryDigest:
		return "digest"
	}
	return "carry(?)"
}

// Decision is how one collection travels to one peer.
type Decision struct {
	// Collection is the collection the decision is for.
	Collection string
	// Priority orders the collection against others with a backlog.
	Priority core.Priority
	// Mode says when the changes travel.
	Mode core.Mode
	// Interval is the batching period of a periodic collection (never 0
	// for one; DefaultInterval when its policy gives none).
	Interval time.Duration
	// Weight is the collection's share of the bandwidth among collections
	// of its priority with a backlog at the same time (at least 1).
	Weight int
	// Withheld is set when a device override keeps the collection from
	// the peer (Mode local-only for it): its changes still travel, as
	// stubs, so that the peer's version vector stays contiguous.
	Withheld bool
}

// Admitted reports whether the collection's changes travel to the peer at
// all.
func (d Decision) Admitted() bool { return d.Mode != core.ModeLocalOnly }

// Carry says what of one change travels to the peer; summary is the
// change's core.Record.Summary flag. A collection withheld from the peer
// by a device override, or on-demand, travels as stubs (CarryDigest); a
// summary one whole for the versions the host marked as summaries, as
// stubs otherwise; local-only never (its changes take no sequence number);
// every other mode whole.
func (d Decision) Carry(summary bool) Carry {
	switch {
	case d.Withheld:
		return CarryDigest
	case d.Mode == core.ModeLocalOnly:
		return CarryNothing
	case d.Mode == core.ModeOnDemand:
		return CarryDigest
	case d.Mode == core.ModeSummary && !summary:
		return CarryDigest
	}
	return CarryValue
}

// WantsValues reports whether a device whose own decision for a
// collection is d wants every value of it: no mode or override of its
// leaves values behind. Stubs of such a collection go on the device's
// wanted list (backfill).
func (d Decision) WantsValues() bool {
	return d.Carry(false) == CarryValue
}

// DecideDevice returns how collection travels to a peer whose sync policy
// is dev: Table.Decide with dev's overrides in place of those set with
// SetDevice (for a node that reads device policies from its registry as
// they change, without rebuilding the table).
func (p *Planner) DecideDevice(dev Device, collection string) Decision {
	return p.t.decide(collection, dev)
}

// Due reports whether changes of the collection written since last (the
// end of the previous flush to the peer; zero if none yet) may go out at
// now, and if not, when they may. Immediate and on-demand collections are
// always due, periodic ones once Interval has passed since last, and
// local-only ones never (next is zero).
func (d Decision) Due(last, now time.Time) (due bool, next time.Time) {
	switch d.Mode {
	case core.ModeLocalOnly:
		return false, time.Time{}
	case core.ModePeriodic:
		if last.IsZero() {
			return true, now
		}
		next = last.Add(d.Interval)
		if now.Before(next) {
			return false, next
		}
		return true, now
	}
	return true, now
}

// Planner answers the per-peer sender's questions: does a collection
// travel to this peer, when, and which collection goes next. It is pure:
// it reads a Table and the arguments it is given, never the clock, and
// does no I/O. A Planner is safe for concurrent use once its table is
// built; the Queues it makes are not (one per sender).
type Planner struct{ t *Table }

// NewPlanner returns a planner over t. Nil t means a table in which every
// collection is medium priority and immediate.
func NewPlanner(t *Table) *Planner {
	if t == nil {
		t = NewTable(core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	}
	return &Planner{t: t}
}

// Table returns the planner's table.
func (p *Planner) Table() *Table { return p.t }

// Decide returns how collection travels to peer (Table.Decide).
func (p *Planner) Decide(peer core.DeviceID, collection string) Decision {
	return p.t.Decide(peer, collection)
}

// Admit reports whether collection's changes travel to peer at all.
func (p *Planner) Admit(peer core.DeviceID, collection string) bool {
	return p.t.Decide(peer, collection).Admitted()
}

// When returns the mode in which collection travels to peer.
func (p *Planner) When(peer core.DeviceID, collection string) core.Mode {
	return p.t.Decide(peer, collection).Mode
}

// Priority returns the priority of collection towards peer.
func (p *Planner) Priority(peer core.DeviceID, collection string) core.Priority {
	return p.t.Decide(peer, collection).Priority
}

// Sort orders collections for peer: highest priority first, then by name;
// collections not admitted go last. Merkle repair and a first sync walk
// collections in this order.
func (p *Planner) Sort(peer core.DeviceID, collections []string) {
	sort.SliceStable(collections, func(i, j int) bool {
		a, b := p.Decide(peer, collections[i]), p.Decide(peer, collections[j])
		if a.Admitted() != b.Admitted() {
			return a.Admitted()
		}
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Collection < b.Collection
	})
}

// Queue returns a new send queue for peer (see Queue).
func (p *Planner) Queue(peer core.DeviceID) *Queue {
	return &Queue{p: p, peer: peer, vt: map[string]float64{}, active: map[string]bool{}, open: map[string]bool{}, last: map[string]time.Time{}, clock: map[core.Priority]float64{}}
}
