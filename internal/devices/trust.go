package devices

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

// Trust decides who may hold a session with this node, from the device
// registry (the seed's device_registry table in the libSQL file, or memory
// for other stores). While a pairing invitation is open (registered,
// neither redeemed, expired nor burned by wrong codes) it also admits
// unknown devices, but only to the pairing ceremony: the node never
// syncs with a device the registry does not trust (Trusted).
type Trust struct {
	devices registry.Store
	log     *slog.Logger

	mu      sync.Mutex
	invites *registry.Tracker                // this device's invitations (nil: none yet)
	now     func() time.Time                 // the clock their expiry is read on
	joining map[core.DeviceID]core.PublicKey // inviters we are joining
	notice  func(core.DeviceID) []byte       // a revoked device's revocation (SetNotices)
}

// SetNotices makes the refusal of a revoked device carry what notice
// returns for it (Registry.Notice): the signed operation that revoked it.
func (t *Trust) SetNotices(notice func(core.DeviceID) []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notice = notice
}

var (
	_ core.Authorizer     = (*Trust)(nil)
	_ transport.KeyLookup = (*Trust)(nil)
)

// OpenTrust opens the device registry: its SQL table in tables (the libSQL
// store's file), or an in-memory registry when tables is nil. log receives
// its warnings (nil: discarded).
func OpenTrust(ctx context.Context, tables core.SQLStore, log *slog.Logger) (*Trust, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Trust{joining: map[core.DeviceID]core.PublicKey{}, log: log}
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

// Trusted reports whether the registry trusts the device with this key.
func (t *Trust) Trusted(ctx context.Context, id core.DeviceID, key core.PublicKey) bool {
	d, err := t.devices.Get(ctx, id)
	return err == nil && d.PublicKey == key && (d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner)
}

// Authorize implements core.Authorizer.
func (t *Trust) Authorize(ctx context.Context, id core.DeviceID, key core.PublicKey) error {
	if t.Trusted(ctx, id, key) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if d, err := t.devices.Get(ctx, id); err == nil && d.Trust == registry.TrustRevoked {
		err := fmt.Errorf("%w: device %s is revoked", core.ErrUnauthorized, id.Short())
		if t.notice != nil {
			if n := t.notice(id); len(n) > 0 {
				return &core.NoticeError{Err: err, Notice: n}
			}
		}
		return err
	}
	if k, ok := t.joining[id]; ok && k == key {
		return nil // the inviter whose invitation we are using
	}
	if t.invites != nil && len(t.invites.Open(t.now())) > 0 {
		return nil // admitted to the pairing ceremony only
	}
	return fmt.Errorf("%w: device %s is not paired", core.ErrUnauthorized, id.Short())
}

// LookupKey implements transport.KeyLookup.
func (t *Trust) LookupKey(ctx context.Context, id core.DeviceID) (core.PublicKey, error) {
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

// Invites admits unknown devices to the pairing ceremony while tracker
// holds an open invitation, read on now.
func (t *Trust) Invites(tracker *registry.Tracker, now func() time.Time) {
	t.mu.Lock()
	t.invites, t.now = tracker, now
	t.mu.Unlock()
}

// Joining admits the inviter whose invitation this device is using, with
// the key the invitation names, until the returned function is called.
func (t *Trust) Joining(issuer core.DeviceID, key core.PublicKey) (done func()) {
	t.mu.Lock()
	t.joining[issuer] = key
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		delete(t.joining, issuer)
		t.mu.Unlock()
	}
}

// Admit admits the device owning key to sessions with this node, without
// the pairing ceremony (TrustDevice), or as a device the pairing handed
// over. A revoked device stays revoked. The admission is kept in the
// device table, so it lasts only until Close when the store has no
// core.SQLStore.
func (t *Trust) Admit(ctx context.Context, key core.PublicKey, name string) error {
	return t.devices.Put(ctx, registry.Device{
		ID: core.DeviceIDFromKey(key), PublicKey: key, Trust: registry.TrustTrusted, Name: name,
	})
}

// Revoke cuts a device off: it is marked revoked in the registry
// (terminal: it can never be trusted again), its live sessions are closed
// at once, and it is refused from then on. The revocation is then made a
// signed operation of the mesh, and the mesh secret rotated.
func (n *Registry) Revoke(ctx context.Context, id core.DeviceID) error {
	if err := n.cfg.Replica.RefuseReentry(ctx, "revoke"); err != nil {
		return err
	}
	d, err := n.cfg.Trust.devices.Get(ctx, id)
	if errors.Is(err, core.ErrNotFound) {
		d = registry.Device{ID: id}
	} else if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	ts, err := n.cfg.HLC.Now()
	if err != nil {
		return err
	}
	d.Trust, d.RevokedAt, d.UpdatedAt = registry.TrustRevoked, ts, ts
	if err := n.cfg.Trust.devices.Put(ctx, d); err != nil {
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

// List lists the device registry, sorted by id.
func (t *Trust) List(ctx context.Context) ([]registry.Device, error) {
	return t.devices.List(ctx)
}

// Touch records that a trusted peer was seen at now.
func (t *Trust) Touch(ctx context.Context, id core.DeviceID, now time.Time) {
	if err := t.devices.Touch(ctx, id, now); err != nil && !errors.Is(err, core.ErrNotFound) {
		t.log.Warn("update last_seen", "peer", id.Short(), "err", err)
	}
}
