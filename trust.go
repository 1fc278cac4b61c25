package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

// Device is one entry of the device registry: a device of the user's and
// how far this device trusts it.
type Device = registry.Device

// TrustLevel says how far a device is trusted.
type TrustLevel = registry.TrustLevel

// Trust levels, re-exported from registry.
const (
	TrustPending = registry.TrustPending
	TrustTrusted = registry.TrustTrusted
	TrustOwner   = registry.TrustOwner
	TrustRevoked = registry.TrustRevoked
)

// trust decides who may hold a session with this node, from the device
// registry (the seed's device_registry table in the libSQL file, or memory
// for other stores). While a pairing invitation is open (registered,
// neither redeemed, expired nor burned by wrong codes) it also admits
// unknown devices, but only to the pairing ceremony: runSession never
// syncs with a device the registry does not trust.
type trust struct {
	devices registry.Store

	mu      sync.Mutex
	invites *registry.Tracker                // this device's invitations (nil: none yet)
	now     func() time.Time                 // the clock their expiry is read on
	joining map[core.DeviceID]core.PublicKey // inviters we are joining
}

var (
	_ core.Authorizer     = (*trust)(nil)
	_ transport.KeyLookup = (*trust)(nil)
)

// tablesOf finds, once for New, the database that keeps the device
// registry and the audit log beside st's records: st's own (core.SQLStore),
// or that of a store in its Unwrap chain (core.StoreAs). Without one it
// warns and returns nil, and both are kept in memory: see core.SQLStore for
// what that means, and core.Unwrapper for how a wrapper keeps them.
func tablesOf(st Store, log *slog.Logger) core.SQLStore {
	if t, ok := core.StoreAs[core.SQLStore](st); ok {
		return t
	}
	log.Warn("store has no core.SQLStore, not even through Unwrap: device registry and audit log kept in memory until Close",
		"store", fmt.Sprintf("%T", st))
	return nil
}

// newTrust opens the device registry: its SQL table in tables (the libSQL
// store's file), or an in-memory registry when tables is nil.
func newTrust(ctx context.Context, tables core.SQLStore) (*trust, error) {
	t := &trust{joining: map[core.DeviceID]core.PublicKey{}}
	if tables != nil {
		if err := registry.EnsureSchema(ctx, tables.DB()); err != nil {
			return nil, fmt.Errorf("open device registry: %w", err)
		}
		t.devices = registry.NewSQL(tables.DB())
	} else {
		t.devices = registry.NewMemory()
	}
	return t, nil
}

// trusted returns the device if the registry trusts it with this key.
func (t *trust) trusted(ctx context.Context, id core.DeviceID, key core.PublicKey) bool {
	d, err := t.devices.Get(ctx, id)
	return err == nil && d.PublicKey == key && (d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner)
}

// Authorize implements core.Authorizer.
func (t *trust) Authorize(ctx context.Context, id core.DeviceID, key core.PublicKey) error {
	if t.trusted(ctx, id, key) {
		return nil
	}
	if d, err := t.devices.Get(ctx, id); err == nil && d.Trust == registry.TrustRevoked {
		return fmt.Errorf("%w: device %s is revoked", core.ErrUnauthorized, id.Short())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.joining[id]; ok && k == key {
		return nil // the inviter whose invitation we are using
	}
	if t.invites != nil && len(t.invites.Open(t.now())) > 0 {
		return nil // admitted to the pairing ceremony only
	}
	return fmt.Errorf("%w: device %s is not paired", core.ErrUnauthorized, id.Short())
}

// LookupKey implements transport.KeyLookup.
func (t *trust) LookupKey(ctx context.Context, id core.DeviceID) (core.PublicKey, error) {
	d, err := t.devices.Get(ctx, id)
	if err == nil && d.Trust != registry.TrustRevoked {
		return d.PublicKey, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.joining[id]; ok {
		return k, nil
	}
	return core.PublicKey{}, fmt.Errorf("key of %s: %w", id.Short(), core.ErrNotFound)
}

// TrustDevice admits the device owning key to sessions with this node,
// without the pairing ceremony: for hosts that provision device keys
// themselves, and for tests. Prefer Invite and Join. A revoked device stays
// revoked. The admission is kept in the device registry's table, so it
// lasts only until Close when the store has no core.SQLStore.
func (n *Node) TrustDevice(key PublicKey) {
	_ = n.trust.devices.Put(context.Background(), registry.Device{
		ID: core.DeviceIDFromKey(key), PublicKey: key, Trust: registry.TrustTrusted, Name: "device",
	})
}

// RevokeDevice cuts a device off: it is marked revoked in the registry
// (terminal: it can never be trusted again), its live sessions are closed
// at once, and it is refused from then on.
func (n *Node) RevokeDevice(ctx context.Context, id DeviceID) error {
	if err := n.refuseReentry(ctx, "revoke"); err != nil {
		return err
	}
	d, err := n.trust.devices.Get(ctx, id)
	if errors.Is(err, core.ErrNotFound) {
		d = registry.Device{ID: id}
	} else if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	ts, err := n.hlc.Now()
	if err != nil {
		return err
	}
	d.Trust, d.RevokedAt, d.UpdatedAt = registry.TrustRevoked, ts, ts
	if err := n.trust.devices.Put(ctx, d); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	closed := n.cutOff(id)
	n.log.Info("device revoked", "peer", id.Short(), "sessions_closed", closed)
	e := audit.Entry{Kind: audit.KindRegistryOp, Device: id, Detail: audit.Detail{audit.Text("op", "revoke"), audit.Num("sessions_closed", int64(closed))}}
	n.record(ctx, e)
	// Tell every other device of the mesh, as a signed operation.
	if err := n.revokeInMesh(ctx, id); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// cutOff closes every live session with a device and returns how many;
// the device is refused from then on (internal/peers).
func (n *Node) cutOff(id DeviceID) int { return n.peers.CutOff(id) }

// Devices lists the device registry, sorted by id.
func (n *Node) Devices(ctx context.Context) ([]Device, error) {
	return n.trust.devices.List(ctx)
}

// touch records that a trusted peer was seen now.
func (n *Node) touch(ctx context.Context, id DeviceID) {
	if err := n.trust.devices.Touch(ctx, id, n.cfg.Clock.Now()); err != nil && !errors.Is(err, core.ErrNotFound) {
		n.log.Warn("update last_seen", "peer", id.Short(), "err", err)
	}
}
