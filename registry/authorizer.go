package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Lookup is the part of a Store the Authorizer reads.
type Lookup interface {
	Get(ctx context.Context, id core.DeviceID) (Device, error)
}

// Authorizer admits to sync sessions exactly the trusted and owner devices
// of the registry table, with the key pinned there. It implements
// core.Authorizer and is safe for concurrent use.
type Authorizer struct {
	devices Lookup
}

var _ core.Authorizer = (*Authorizer)(nil)

// NewAuthorizer returns an Authorizer reading devices (normally a Store
// kept up to date with Save).
func NewAuthorizer(devices Lookup) *Authorizer { return &Authorizer{devices: devices} }

// Authorize refuses, with an error wrapping core.ErrUnauthorized, a device
// that is unknown, pending or revoked, or whose proven key is not the one
// pinned for its id. A failure to read the table is returned as is (and
// refuses the peer too).
func (a *Authorizer) Authorize(ctx context.Context, id core.DeviceID, key core.PublicKey) error {
	if core.DeviceIDFromKey(key) != id {
		return fmt.Errorf("authorize %s: %w: key does not match the device id", id.Short(), core.ErrUnauthorized)
	}
	d, err := a.devices.Get(ctx, id)
	if errors.Is(err, core.ErrNotFound) {
		return fmt.Errorf("authorize %s: %w: unknown device", id.Short(), core.ErrUnauthorized)
	}
	if err != nil {
		return fmt.Errorf("authorize %s: %w", id.Short(), err)
	}
	switch {
	case d.Trust == TrustRevoked:
		return fmt.Errorf("authorize %s: %w", id.Short(), ErrRevoked)
	case !d.Trust.CanSync():
		return fmt.Errorf("authorize %s: %w: device is %s", id.Short(), core.ErrUnauthorized, d.Trust)
	case d.PublicKey != key:
		return fmt.Errorf("authorize %s: %w: key differs from the pinned key", id.Short(), core.ErrUnauthorized)
	}
	return nil
}
