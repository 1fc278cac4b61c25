package federation

import (
	"context"

	"github.com/devicemesh/federation/internal/syncer"
)

// Observability beyond the store counters: a session's selective-sync
// traffic (PeerStatus.Selective) and what waits on this node or was
// refused by it (Stats.Queues). Package fedprom exports all of Stats,
// Peers, RelayMail and BlobStats to Prometheus.

// SelectiveStatus counts one session's selective-sync traffic
// (PeerStatus.Selective).
type SelectiveStatus struct {
	// StubsSent counts changes sent as stubs (version, key, size and
	// digest, without the value).
	StubsSent uint64
	// WantsSent counts keys this device asked the peer for.
	WantsSent uint64
	// ValuesSent counts values sent at the peer's request; ValuesRecv
	// values received and installed over their stubs; ValuesRefused values
	// received that did not match their stub's digest.
	ValuesSent, ValuesRecv, ValuesRefused uint64
}

func selectiveStatus(st syncer.Status) SelectiveStatus {
	return SelectiveStatus{StubsSent: st.StubsSent, WantsSent: st.WantsSent,
		ValuesSent: st.ValuesSent, ValuesRecv: st.ValuesRecv, ValuesRefused: st.ValuesRefused}
}

// QueueStats is what waits on this node and what it refused (Stats.Queues).
type QueueStats struct {
	// Conflicts counts the manual conflicts waiting for the host
	// (Node.Conflicts), per collection; a collection without any is absent.
	Conflicts map[string]int
	// Wanted counts the keys on the wanted list (values asked for with
	// Node.Fetch or by policy, not received yet), per collection.
	Wanted map[string]int
	// RelayMailPending is RelayMail().Pending: envelopes left at the relay
	// because what they hold cannot be applied yet.
	RelayMailPending uint64
	// Refusals counts the refusals recorded in the audit log since the
	// node opened (audit.KindRefusal entries), by reason code: a session
	// whose pairing failed ("pairing-failed"), a value that did not match
	// its digest ("value-digest"), a forged replica, registry op or audit
	// head, ... A reason never met is absent.
	Refusals map[string]uint64
}

// queueStats is Stats.Queues.
func (n *Node) queueStats(ctx context.Context) (QueueStats, error) {
	list, err := n.c.Rep.Conflicts(ctx)
	if err != nil {
		return QueueStats{}, err
	}
	q := QueueStats{Conflicts: map[string]int{}, Wanted: map[string]int{},
		RelayMailPending: n.RelayMail().Pending, Refusals: n.c.Anchor.Refusals()}
	for _, c := range list {
		q.Conflicts[c.Collection]++
	}
	for _, w := range n.c.Rep.WantedList() {
		if !internal(w.Collection) {
			q.Wanted[w.Collection]++
		}
	}
	if q.Refusals == nil {
		q.Refusals = map[string]uint64{}
	}
	return q, nil
}
