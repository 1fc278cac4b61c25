package federation

import "github.com/devicemesh/federation/internal/engine"

// EventKind tells what an Event reports.
type EventKind int

// Event kinds.
const (
	// EventChange reports that a record changed, by a local write or by
	// applying a peer's change.
	EventChange EventKind = iota + 1
	// EventConflict reports a conflict queued for the host (see
	// Node.Conflicts); ConflictID names it.
	EventConflict
	// EventResolved reports that a queued conflict was settled, here or by
	// a write from another device.
	EventResolved
	// EventClockDrift reports changes from Origin whose timestamps lie more
	// than Config.MaxClockDrift ahead of this device's clock (Timestamp is
	// the furthest). They were accepted and merged; this device's clock
	// followed them only up to the bound (see Config.MaxClockDrift). One
	// device's clock, here or there, is wrong: tell the user. Counted in
	// Stats.ClockDrift.
	EventClockDrift
	// EventRepairUnsettled reports a peer (Origin) holding the same changes
	// as this device whose records still differ after repeated Merkle
	// repairs; Reason says why as far as the node can tell, Collection
	// names a collection that differs. Repair keeps retrying with backoff.
	// Counted in Stats.RepairsUnsettled.
	EventRepairUnsettled
	// EventAuditTampered reports an audit history that was rewritten or
	// truncated: this device's own chain lacks a head it signed earlier
	// (Origin is this device; see Node.VerifyAudit), or a peer's signed
	// head forks from the one held here (Origin is that peer). Counted in
	// Stats.AuditTampered.
	EventAuditTampered
	// EventRevoked reports that this device was revoked by another device
	// of the mesh (Origin): every device now refuses it, it stops
	// dialling, and its own registry says so (Devices). It learns it from
	// the signed revocation that a refusing device hands it (see
	// core.NoticeError), or from its registry when it restarts.
	EventRevoked
	// EventPeerConnected reports a sync session with Origin that started
	// (lane h27).
	EventPeerConnected
	// EventPeerDisconnected reports a sync session with Origin that ended;
	// Reason says why ("done", "timeout", "unauthorized", ...) (lane h27).
	EventPeerDisconnected
	// EventSyncProgress reports how a sync towards a peer (Origin) stands
	// for one collection (Collection; empty for an offline peer):
	// Progress holds the records and bytes done and needed, the rate, and
	// what waits and why (lane h25). Raised during syncs that last longer
	// than a quarter of a second, at most four times a second per peer,
	// and once when such a sync ends; also in Stats.Sync.
	EventSyncProgress
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventChange:
		return "change"
	case EventConflict:
		return "conflict"
	case EventResolved:
		return "resolved"
	case EventClockDrift:
		return "clock-drift"
	case EventRepairUnsettled:
		return "repair-unsettled"
	case EventAuditTampered:
		return "audit-tampered"
	case EventRevoked:
		return "revoked"
	case EventPeerConnected:
		return "peer-connected"
	case EventPeerDisconnected:
		return "peer-disconnected"
	case EventSyncProgress:
		return "sync-progress"
	}
	return "event(?)"
}

// Event is one notification delivered to subscribers. It never carries the
// value: read it with Get if needed.
type Event struct {
	Kind       EventKind
	Collection string
	Key        string
	Deleted    bool
	// Origin is the device that made the change (not its replica
	// incarnation: see Node.OriginDevice). A change this device made before
	// its store was restored from an older copy comes back from peers with
	// Origin equal to this device and Local false: test Local, not Origin,
	// to tell this node's own writes.
	Origin DeviceID
	// Local is set for writes made through this node since it opened.
	Local     bool
	Timestamp Timestamp
	// ConflictID names the conflict of an EventConflict or EventResolved.
	ConflictID string
	// Reason explains an EventClockDrift, EventRepairUnsettled or
	// EventAuditTampered in a few
	// words (never personal data).
	Reason string
	// Progress is the state of an EventSyncProgress (nil otherwise).
	Progress *SyncProgress
}

// SubscribeOptions filters a subscription.
type SubscribeOptions struct {
	// Collections limits events to these collections (empty: all).
	Collections []string
}

// Subscription receives events on C until Close or until the node closes,
// after which C is closed. A slow subscriber never blocks writers: when C's
// buffer (Config.Events.Buffer) is full, events are dropped and counted.
type Subscription struct {
	// C delivers events in commit order.
	C <-chan Event

	sub *engine.Sub[Event]
}

// Dropped returns how many events this subscription lost to a full buffer.
func (s *Subscription) Dropped() uint64 { return s.sub.Dropped() }

// Close ends the subscription and closes C. Idempotent.
func (s *Subscription) Close() { s.sub.Close() }

// Subscribe starts a subscription. On a closed node it returns a
// subscription whose channel is already closed.
func (n *Node) Subscribe(opts SubscribeOptions) *Subscription {
	sub := n.events.Add(opts.Collections)
	return &Subscription{C: sub.C, sub: sub}
}

// publish hands e to the subscriptions, leaving out changes to the SDK's
// own bookkeeping (not the host's data).
func (n *Node) publish(e Event) {
	if e.Kind == EventChange && internal(e.Collection) {
		return
	}
	n.events.Publish(e.Collection, e)
}
