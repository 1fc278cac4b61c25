package anchor

import (
	"context"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
)

// Every sync operation is appended to a tamper-evident audit log (each
// entry hashes the one before): sessions opened and closed, batches sent
// and received with their counts, conflicts detected and how they were
// resolved, Merkle repairs, registry changes, pairing steps and refusals.
// It is kept in the store's database when the store has one (the libSQL
// file; see core.SQLStore and the root package's tablesOf), in memory
// otherwise, where it restarts empty at each New. Entries carry counts,
// collection names and reason codes, never keys or values.

// OpenLog opens the audit log: its SQL table in tables, or an in-memory
// log when tables is nil.
func OpenLog(ctx context.Context, tables core.SQLStore, clock core.Clock) (*audit.Log, error) {
	if tables != nil {
		db := tables.DB()
		if err := audit.EnsureSchema(ctx, db); err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return audit.New(audit.NewSQL(db), audit.Options{Clock: clock}), nil
	}
	return audit.New(audit.NewMemory(), audit.Options{Clock: clock}), nil
}

// Log returns the audit log, to query (by time, device and kind) and to
// Verify.
func (a *Anchor) Log() *audit.Log { return a.log }

// Record appends an entry; a failure is logged, never fatal to sync. No
// entry is dropped silently: one the log refuses as invalid (a programming
// error: a detail key or text the audit package does not accept) is logged
// at error level and replaced by audit.Salvage's substitute, which keeps its
// kind, device, time and valid fields and carries audit_error, so the event
// is in the chain and the mistake is visible to a query (tests look for it).
// Only a failing audit store loses an entry, and that is logged as an error.
func (a *Anchor) Record(ctx context.Context, e audit.Entry) {
	ctx = context.WithoutCancel(ctx)
	a.refused.note(e)
	got, err := a.log.Append(ctx, e)
	if errors.Is(err, audit.ErrInvalidEntry) {
		a.logger.Error("audit entry refused, recording a substitute", "kind", e.Kind, "err", err)
		got, err = a.log.Append(ctx, audit.Salvage(e))
	}
	if err != nil {
		a.logger.Error("audit append failed", "kind", e.Kind, "err", err)
		return
	}
	a.noteAudited(got.Seq)
}
