package federation

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// When a peer holds exactly the changes this device holds (equal version
// vectors) but its Merkle roots differ, the records differ: a merge
// settled differently, a repair was cut short, a store lost or altered a
// record. The receive goroutine then asks for a Merkle repair, and keeps
// asking, with backoff, until the roots are equal: repairRetryMin after the
// first attempt, doubling up to repairRetryMax, starting over when the
// version vectors move on or the roots become equal. After
// repairUnsettledAfter attempts for the same version vector the node says
// so once (log, EventRepairUnsettled, Stats.RepairsUnsettled), and keeps
// retrying at the slower pace.
const (
	repairRetryMin       = time.Second
	repairRetryMax       = time.Minute
	repairUnsettledAfter = 3
)

// repairGate paces the repairs one session asks for (receive goroutine
// only).
type repairGate struct {
	vv       [32]byte // the version vector the attempts are for
	tries    int
	next     time.Time
	reported bool
}

// askRepair decides whether roots that differ at equal version vectors
// call for a repair now, and reports a difference that does not settle.
func (ps *peerSession) askRepair(vv core.VersionVector, ours, theirs map[string][32]byte) bool {
	g := &ps.gate
	if key := sha256.Sum256(wire.AppendVV(nil, vv)); key != g.vv {
		*g = repairGate{vv: key}
	}
	if g.tries >= repairUnsettledAfter && !g.reported {
		g.reported = true
		ps.n.reportUnsettled(ps.peer, g.tries, ours, theirs)
	}
	now := time.Now()
	if now.Before(g.next) {
		return false
	}
	g.tries++
	g.next = now.Add(min(repairRetryMax, repairRetryMin<<min(g.tries-1, 16)))
	return true
}

// settled forgets the attempts once the roots are equal.
func (ps *peerSession) settled() { ps.gate = repairGate{} }

// reportUnsettled tells the host that repairs with peer did not make the
// records equal, and why as far as this device can tell.
func (n *Node) reportUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte) {
	var differ []string
	for c, r := range ours {
		if theirs[c] != r {
			differ = append(differ, c)
		}
	}
	for c := range theirs {
		if _, ok := ours[c]; !ok {
			differ = append(differ, c)
		}
	}
	sort.Strings(differ)
	reason := fmt.Sprintf("records differ after %d repairs at equal version vectors (a store that does not keep what repair installs, or a resolver that does not give the same result on every device)", tries)
	if queued := n.queuedIn(differ); queued > 0 {
		reason = fmt.Sprintf("%d conflicts wait for the host to resolve them (Node.Conflicts)", queued)
	}
	coll := ""
	if len(differ) > 0 {
		coll = differ[0]
	}
	n.health.repairsUnsettled.Add(1)
	n.log.Warn("merkle repair does not settle", "peer", peer.Short(), "collections", differ, "reason", reason)
	n.events.publish(Event{Kind: EventRepairUnsettled, Collection: coll, Origin: peer, Reason: reason})
}

// queuedIn counts the manual conflicts queued in collections.
func (n *Node) queuedIn(collections []string) int {
	return n.rep.QueuedIn(collections)
}
