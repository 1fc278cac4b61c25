package federation

import (
	"context"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/anchor"
)

// The node's side of the audit log and its anchoring (internal/anchor):
// the host API, the errors, and the thin adapters through which the anchor
// reaches the commit pipeline and the event hub.

// auditHeadsCollection holds the devices' signed audit heads (synced).
const auditHeadsCollection = anchor.Collection

// ErrAuditTampered reports that this device's audit chain lacks, or differs
// from, a head it signed earlier: its history was rewritten or truncated
// (or restored from an older copy without Restore, which declares a
// restore and starts a new epoch of heads). It wraps audit.ErrTampered.
var ErrAuditTampered = anchor.ErrTampered

// ErrForgedHead reports a _fed.auditheads record that does not hold a
// head validly signed by the device it is keyed by.
var ErrForgedHead = anchor.ErrForgedHead

// headResolver settles concurrent versions of a device's head.
type headResolver = anchor.Resolver

// Audit returns the node's audit log, to query (by time, device and kind)
// and to Verify.
func (n *Node) Audit() *audit.Log { return n.c.Anchor.Log() }

// VerifyAudit checks this device's audit chain: the whole chain, and that
// it contains the highest signed head of this device held here (its own,
// or one a peer sent back). It returns nil when both hold, or an error
// wrapping ErrAuditTampered (and audit.ErrTampered) when the chain was
// rewritten or truncated, now or as detected earlier in this open.
func (n *Node) VerifyAudit(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	return n.c.Anchor.Verify(ctx)
}

// tampered raises the anchor's tamper reports as EventAuditTampered.
func (n *Node) tampered(origin core.DeviceID, reason string) {
	n.publish(Event{Kind: EventAuditTampered, Origin: origin, Reason: reason})
}

// selfRevoked raises EventRevoked (engine.Options.SelfRevoked).
func (n *Node) selfRevoked(by core.DeviceID) {
	n.publish(Event{Kind: EventRevoked, Origin: by, Reason: "revoked by " + by.Short()})
}
