package transport

import (
	"context"
	"fmt"
	"sync"

	"github.com/devicemesh/federation/core"
)

// KeyLookup finds the registered public key of a device, so that Dial can
// run the one-round-trip IK handshake towards a known peer. It returns an
// error wrapping core.ErrNotFound for a device it does not know (Dial then
// falls back to XX and checks the identity the peer proves). It must be safe
// for concurrent use and should not block long.
type KeyLookup interface {
	LookupKey(ctx context.Context, id core.DeviceID) (core.PublicKey, error)
}

// AllowList is a small Authorizer and KeyLookup over a set of device keys,
// for hosts with a fixed set of devices and for tests. Safe for concurrent
// use.
type AllowList struct {
	mu      sync.RWMutex
	keys    map[core.DeviceID]core.PublicKey
	revoked map[core.DeviceID]bool
}

var (
	_ core.Authorizer = (*AllowList)(nil)
	_ KeyLookup       = (*AllowList)(nil)
)

// NewAllowList returns a list that admits the given keys.
func NewAllowList(keys ...core.PublicKey) *AllowList {
	a := &AllowList{keys: make(map[core.DeviceID]core.PublicKey), revoked: make(map[core.DeviceID]bool)}
	for _, k := range keys {
		a.Add(k)
	}
	return a
}

// Add admits the device owning key, unless it was revoked.
func (a *AllowList) Add(key core.PublicKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys[core.DeviceIDFromKey(key)] = key
}

// Revoke refuses the device from now on; a later Add does not undo it.
func (a *AllowList) Revoke(id core.DeviceID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[id] = true
	delete(a.keys, id)
}

// Authorize admits a listed, unrevoked device presenting its listed key.
func (a *AllowList) Authorize(_ context.Context, id core.DeviceID, key core.PublicKey) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.revoked[id] {
		return fmt.Errorf("%w: device %s is revoked", core.ErrUnauthorized, id.Short())
	}
	k, ok := a.keys[id]
	if !ok || k != key {
		return fmt.Errorf("%w: device %s is unknown", core.ErrUnauthorized, id.Short())
	}
	return nil
}

// LookupKey returns the listed key of id.
func (a *AllowList) LookupKey(_ context.Context, id core.DeviceID) (core.PublicKey, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if k, ok := a.keys[id]; ok && !a.revoked[id] {
		return k, nil
	}
	return core.PublicKey{}, fmt.Errorf("key of %s: %w", id.Short(), core.ErrNotFound)
}
