package federation

import (
	"context"
	"database/sql"
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
// file), in memory otherwise. Entries carry counts, collection names and
// reason codes, never keys or values.

// openAudit opens the audit log kept by st.
func openAudit(ctx context.Context, st Store, clock core.Clock) (*audit.Log, error) {
	if db, ok := st.(interface{ DB() *sql.DB }); ok {
		if err := audit.EnsureSchema(ctx, db.DB()); err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return audit.New(audit.NewSQL(db.DB()), audit.Options{Clock: clock}), nil
	}
	return audit.New(audit.NewMemory(), audit.Options{Clock: clock}), nil
}

// Audit returns the node's audit log, to query (by time, device and kind)
// and to Verify.
func (n *Node) Audit() *audit.Log { return n.audit }

// record appends an entry; a failure is logged, never fatal to sync.
func (n *Node) record(ctx context.Context, e audit.Entry) {
	if _, err := n.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		n.log.Warn("audit append failed", "kind", e.Kind, "err", err)
	}
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
