package federation

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
)

// Every sync operation is appended to a tamper-evident audit log (each
// entry hashes the one before): sessions opened and closed, batches sent
// and received with their counts, conflicts detected and how they were
// resolved, Merkle repairs, registry changes, pairing steps and refusals.
// It is kept in the store's database when the store has one (the libSQL
// file; see core.SQLStore and tablesOf), in memory otherwise, where it
// restarts empty at each New. Entries carry counts, collection names and
// reason codes, never keys or values.

// openAudit opens the audit log: its SQL table in tables, or an in-memory
// log when tables is nil.
func openAudit(ctx context.Context, tables core.SQLStore, clock core.Clock) (*audit.Log, error) {
	if tables != nil {
		db := tables.DB()
		if err := audit.EnsureSchema(ctx, db); err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return audit.New(audit.NewSQL(db), audit.Options{Clock: clock}), nil
	}
	return audit.New(audit.NewMemory(), audit.Options{Clock: clock}), nil
}

// Audit returns the node's audit log, to query (by time, device and kind)
// and to Verify.
func (n *Node) Audit() *audit.Log { return n.audit }

// record appends an entry; a failure is logged, never fatal to sync. No
// entry is dropped silently: one the log refuses as invalid (a programming
// error: a detail key or text the audit package does not accept) is logged
// at error level and replaced by audit.Salvage's substitute, which keeps its
// kind, device, time and valid fields and carries audit_error, so the event
// is in the chain and the mistake is visible to a query (tests look for it).
// Only a failing audit store loses an entry, and that is logged as an error.
func (n *Node) record(ctx context.Context, e audit.Entry) {
	ctx = context.WithoutCancel(ctx)
	got, err := n.audit.Append(ctx, e)
	if errors.Is(err, audit.ErrInvalidEntry) {
		n.log.Error("audit entry refused, recording a substitute", "kind", e.Kind, "err", err)
		got, err = n.audit.Append(ctx, audit.Salvage(e))
	}
	if err != nil {
		n.log.Error("audit append failed", "kind", e.Kind, "err", err)
		return
	}
	n.noteAudited(got.Seq)
}

// closeReason turns a session's end into a short reason code.
func closeReason(err error) string {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, context.Canceled):
		return "done"
	case errors.Is(err, core.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, core.ErrClockDrift):
		return "clock-drift"
	case errors.Is(err, core.ErrProtocol):
		return "protocol"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	}
	return "error"
}
