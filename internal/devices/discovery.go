package devices

import (
	"context"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// TrustedKey returns the key of id when the registry trusts it (trusted or
// owner): the key against which discovery checks that device's signed
// announcements. It reads the registry (the store's table).
func (t *Trust) TrustedKey(ctx context.Context, id core.DeviceID) (core.PublicKey, bool) {
	d, err := t.devices.Get(ctx, id)
	if err != nil || (d.Trust != registry.TrustTrusted && d.Trust != registry.TrustOwner) {
		return core.PublicKey{}, false
	}
	return d.PublicKey, true
}
