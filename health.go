package federation

import (
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"
)

// health counts conditions that do not stop the node but that the host
// should hear of (Stats, events).
type health struct {
	clockDrift       atomic.Uint64
	repairsUnsettled atomic.Uint64
}

// observeRemote folds the latest timestamp of a batch received from a
// trusted peer into the clock, under the drift rule of core.HLC: the batch
// is accepted whatever its timestamps, the clock follows them only up to
// the bound, and a timestamp beyond it is logged, counted and published as
// EventClockDrift. Called with writeMu held.
func (n *Node) observeRemote(origin core.DeviceID, ts core.Timestamp) {
	beyond := n.hlc.Receive(ts)
	n.noteAhead(ts)
	if beyond <= 0 {
		return
	}
	n.health.clockDrift.Add(1)
	ahead := time.Duration(ts.Millis()-n.cfg.Clock.Now().UnixMilli()) * time.Millisecond
	n.log.Warn("peer timestamps beyond the clock drift bound; accepted, clock not followed",
		"origin", origin.Short(), "ahead", ahead.Round(time.Second), "limit", n.cfg.MaxClockDrift)
	n.events.publish(Event{Kind: EventClockDrift, Origin: origin, Timestamp: ts,
		Reason: "timestamps " + ahead.Round(time.Second).String() + " ahead of this device's clock"})
}
