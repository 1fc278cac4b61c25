package federation

import (
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
)

// reportUnsettled tells the host that repairs with peer did not make the
// records equal, and why as far as this device can tell.
func (n *Node) reportUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte) {
	differ, reason := engine.Unsettled(tries, ours, theirs, n.c.Rep.QueuedIn)
	coll := ""
	if len(differ) > 0 {
		coll = differ[0]
	}
	n.health.repairsUnsettled.Add(1)
	n.c.Log.Warn("merkle repair does not settle", "peer", peer.Short(), "collections", differ, "reason", reason)
	n.publish(Event{Kind: EventRepairUnsettled, Collection: coll, Origin: peer, Reason: reason})
}
