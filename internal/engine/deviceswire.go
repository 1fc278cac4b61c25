package engine

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
)

// TablesOf finds, once for New, the database that keeps the device
// registry and the audit log beside st's records: st's own (core.SQLStore),
// or that of a store in its Unwrap chain (core.StoreAs). Without one it
// warns and returns nil, and both are kept in memory: see core.SQLStore for
// what that means, and core.Unwrapper for how a wrapper keeps them.
func TablesOf(st core.Store, log *slog.Logger) core.SQLStore {
	if t, ok := core.StoreAs[core.SQLStore](st); ok {
		return t
	}
	log.Warn("store has no core.SQLStore, not even through Unwrap: device registry and audit log kept in memory until Close",
		"store", fmt.Sprintf("%T", st))
	return nil
}

// DevicesReplica is the commit pipeline for internal/devices: the
// replica, whose writes fail once the node is closed (Alive).
type DevicesReplica struct {
	*replica.Replica
	Alive func() error // nil while the node is open
}

// Update commits through the replica, as Node.Update does: not once the
// node is closed, nor for a done ctx.
func (r DevicesReplica) Update(ctx context.Context, op string, fn func(context.Context) ([]replica.Op, error)) error {
	if err := r.Alive(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.Replica.Update(ctx, op, fn)
}
