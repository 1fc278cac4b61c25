package policy

import (
	"sort"
	"strings"

	"github.com/devicemesh/federation/core"
)

// Table holds the collection policies of one node: a policy per collection
// name, policies reserved for name prefixes, policies pinned for the
// node's own collections, a fallback for every other name, and per-device
// overrides. Build it before use (NewTable, then Set, Reserve, Pin,
// SetDevice); once built it is read-only and safe for concurrent use by
// any number of readers. The methods that change it are not safe for
// concurrent use with anything else.
type Table struct {
	fallback core.Policy
	set      map[string]core.Policy
	pinned   map[string]core.Policy
	reserved []prefixPolicy // longest prefix first
	weights  map[string]int
	devices  map[core.DeviceID]Device
}

type prefixPolicy struct {
	prefix string
	p      core.Policy
}

// NewTable returns a table in which every collection has policy fallback
// until Set, Reserve or Pin says otherwise.
func NewTable(fallback core.Policy) *Table {
	return &Table{
		fallback: fallback,
		set:      map[string]core.Policy{},
		pinned:   map[string]core.Policy{},
		weights:  map[string]int{},
		devices:  map[core.DeviceID]Device{},
	}
}

// Set gives collection its policy (the host's choice: Config.Collections),
// replacing the fallback. A reserved prefix or a pin of the same name wins
// over it.
func (t *Table) Set(collection string, p core.Policy) { t.set[collection] = p }

// Reserve gives every collection whose name starts with prefix policy p,
// whatever Set says: the node keeps such names for itself (local-only
// bookkeeping, say). Pin wins over Reserve; of two reserved prefixes, the
// longer wins.
func (t *Table) Reserve(prefix string, p core.Policy) {
	for i, r := range t.reserved {
		if r.prefix == prefix {
			t.reserved[i].p = p
			return
		}
	}
	t.reserved = append(t.reserved, prefixPolicy{prefix, p})
	sort.SliceStable(t.reserved, func(i, j int) bool { return len(t.reserved[i].prefix) > len(t.reserved[j].prefix) })
}

// Pin fixes collection's policy above everything else, device overrides
// included: for the collections the mesh itself runs on (the device
// registry, say), which must reach every device the same way.
func (t *Table) Pin(collection string, p core.Policy) { t.pinned[collection] = p }

// SetWeight sets collection's share of the bandwidth among collections of
// its priority that have a backlog at the same time (see Queue). Weights
// below 1 mean 1, the default.
func (t *Table) SetWeight(collection string, w int) { t.weights[collection] = w }

// SetDevice sets the overrides for one peer (its sync policy from the
// device registry, see ParseDevice). The zero Device removes them.
func (t *Table) SetDevice(peer core.DeviceID, d Device) {
	if len(d.Collections) == 0 {
		delete(t.devices, peer)
		return
	}
	t.devices[peer] = d
}

// Policy returns the policy of collection, without device overrides: the
// one that decides its resolver and whether it leaves the device at all.
func (t *Table) Policy(collection string) core.Policy {
	if p, ok := t.pinned[collection]; ok {
		return p
	}
	for _, r := range t.reserved {
		if strings.HasPrefix(collection, r.prefix) {
			return r.p
		}
	}
	if p, ok := t.set[collection]; ok {
		return p
	}
	return t.fallback
}

// Collections returns the names given a policy by Set or Pin, sorted.
func (t *Table) Collections() []string {
	names := make([]string, 0, len(t.set)+len(t.pinned))
	for c := range t.set {
		names = append(names, c)
	}
	for c := range t.pinned {
		if _, dup := t.set[c]; !dup {
			names = append(names, c)
		}
	}
	sort.Strings(names)
	return names
}

// Decide returns how collection travels to peer: its policy, with the
// peer's overrides applied where they may apply. A pinned collection
// ignores overrides; a collection that is local-only stays local-only,
// whatever an override says (an override can keep a collection from one
// peer, never send one that never leaves the device).
func (t *Table) Decide(peer core.DeviceID, collection string) Decision {
	return t.decide(collection, t.devices[peer])
}

// decide applies dev's override of collection to the table's policy.
func (t *Table) decide(collection string, dev Device) Decision {
	p := t.Policy(collection)
	d := Decision{Collection: collection, Priority: p.Priority, Mode: p.Mode, Interval: p.Interval, Weight: max(1, t.weights[collection])}
	if d.Mode == core.ModePeriodic && d.Interval <= 0 {
		d.Interval = DefaultInterval
	}
	if _, pinned := t.pinned[collection]; pinned || d.Mode == core.ModeLocalOnly {
		return d
	}
	o, ok := dev.Collections[collection]
	if !ok {
		return d
	}
	if o.Priority != nil {
		d.Priority = *o.Priority
	}
	if o.Mode != nil {
		d.Mode = *o.Mode
		d.Withheld = d.Mode == core.ModeLocalOnly
		if d.Mode == core.ModePeriodic && d.Interval <= 0 {
			d.Interval = DefaultInterval
		}
	}
	return d
}
