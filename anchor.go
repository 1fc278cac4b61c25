package federation

import (
	"context"
	"path/filepath"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/engine"
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

// openAnchor opens the audit log (in the store's tables, in memory without
// them) and builds its anchor. A restore declared by Restore is honoured
// only on the default store in Config.Dir.
func (n *Node) openAnchor(ctx context.Context) error {
	log, err := anchor.OpenLog(ctx, n.tables, n.cfg.Clock)
	if err != nil {
		return err
	}
	var marker string
	if n.cfg.Store == nil && n.cfg.Dir != "" {
		marker = filepath.Join(n.cfg.Dir, RestoredFile)
	}
	n.anchor = anchor.New(anchor.Config{
		Log: log, Memory: n.tables == nil,
		Replica: engine.AnchorReplica{Replica: n.rep, Store: n.store}, Identity: n.ident, Events: anchorEvents{n},
		Clock: n.cfg.Clock, Logger: n.log, RestoreMarker: marker, SyncDir: engine.SyncDir,
	})
	return nil
}

// anchorEvents raises the anchor's tamper reports as EventAuditTampered.
type anchorEvents struct{ n *Node }

func (e anchorEvents) Tampered(origin core.DeviceID, reason string) {
	e.n.publish(Event{Kind: EventAuditTampered, Origin: origin, Reason: reason})
}

// Audit returns the node's audit log, to query (by time, device and kind)
// and to Verify.
func (n *Node) Audit() *audit.Log { return n.anchor.Log() }

// VerifyAudit checks this device's audit chain: the whole chain, and that
// it contains the highest signed head of this device held here (its own,
// or one a peer sent back). It returns nil when both hold, or an error
// wrapping ErrAuditTampered (and audit.ErrTampered) when the chain was
// rewritten or truncated, now or as detected earlier in this open.
func (n *Node) VerifyAudit(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	return n.anchor.Verify(ctx)
}

// record appends an entry to the audit log (anchor.Anchor.Record: a
// failure is logged, never fatal to sync).
func (n *Node) record(ctx context.Context, e audit.Entry) { n.anchor.Record(ctx, e) }

// checkHeads is the ingress check for audit heads arriving from a peer
// (anchor.Anchor.CheckHeads), with the write lock held.
func (n *Node) checkHeads(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	return n.anchor.CheckHeads(ctx, from, recs)
}
