package policy

import (
	"maps"

	"github.com/devicemesh/federation/core"
)

// Default returns the design's policy table, one entry per standard
// collection (names in core: CollectionProfile and the rest):
//
//	collection     priority  mode        what travels
//	profile        high      immediate   every write, pushed to connected peers at once
//	conversations  medium    immediate   the full history (per device: summaries, see below)
//	personality    high      immediate   every write, pushed at once
//	embeddings     low       on-demand   keys and digests; values when the host asks
//	analytics      low       periodic    collected and shipped as one batch per interval
//	media          low       thumbnail   records and their thumbnails at once; originals on demand
//	cache          none      local-only  never leaves the device
//
// "Full" in the design (conversations, personality) is the immediate
// mode: every record travels, as soon as it is written. A device that
// should hold only conversation summaries says so in its own sync policy
// (the device registry's sync_policy, see ParseDevice), not here. The
// periodic interval is DefaultInterval. A media record (a blob reference
// with its thumbnail) travels at once; the original it references stays
// behind until the host fetches it (Node.FetchBlob).
//
// The policies carry no resolver (last-writer-wins): the node adds each
// collection's resolver (conflict.Default). The map is a fresh copy on
// every call; a host overrides entries per collection
// (federation.Config.Collections) and per device (Table.SetDevice).
func Default() map[string]core.Policy {
	return maps.Clone(defaults)
}

var defaults = map[string]core.Policy{
	core.CollectionProfile:      {Priority: core.PriorityHigh, Mode: core.ModeImmediate},
	core.CollectionConversation: {Priority: core.PriorityMedium, Mode: core.ModeImmediate},
	core.CollectionPersonality:  {Priority: core.PriorityHigh, Mode: core.ModeImmediate},
	core.CollectionEmbeddings:   {Priority: core.PriorityLow, Mode: core.ModeOnDemand},
	core.CollectionAnalytics:    {Priority: core.PriorityLow, Mode: core.ModePeriodic, Interval: DefaultInterval},
	core.CollectionMedia:        {Priority: core.PriorityLow, Mode: core.ModeThumbnail},
	core.CollectionCache:        {Priority: core.PriorityNone, Mode: core.ModeLocalOnly},
}

// WithDevices returns a copy of t whose per-device overrides are devs
// (peers missing from it have none), sharing t's other, read-only,
// contents. A node rebuilds its table this way when the device registry
// changes a sync policy, and swaps it in whole: readers of the old table
// are never disturbed.
func (t *Table) WithDevices(devs map[core.DeviceID]Device) *Table {
	c := *t
	c.devices = make(map[core.DeviceID]Device, len(devs))
	for id, d := range devs {
		if len(d.Collections) > 0 {
			c.devices[id] = d
		}
	}
	return &c
}
