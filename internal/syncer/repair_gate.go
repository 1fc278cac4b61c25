package syncer

import (
	"crypto/sha256"
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
// so once (Events.RepairUnsettled: the node logs it, raises
// EventRepairUnsettled and counts Stats.RepairsUnsettled), and keeps
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
func (ps *Session) askRepair(vv core.VersionVector, ours, theirs map[string][32]byte) bool {
	g := &ps.gate
	if key := sha256.Sum256(wire.AppendVV(nil, vv)); key != g.vv {
		*g = repairGate{vv: key}
	}
	if g.tries >= repairUnsettledAfter && !g.reported {
		g.reported = true
		ps.cfg.Events.RepairUnsettled(ps.peer, g.tries, ours, theirs)
	}
	now := ps.sched.Now()
	if now.Before(g.next) {
		return false
	}
	g.tries++
	g.next = now.Add(min(repairRetryMax, repairRetryMin<<min(g.tries-1, 16)))
	return true
}

// settled forgets the attempts once the roots are equal.
func (ps *Session) settled() { ps.gate = repairGate{} }
