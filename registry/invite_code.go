package registry

import (
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// InvitationFromCode rebuilds, on the new device, the invitation whose
// short code the user typed, once the issuer's key and addresses were
// found some other way (a code-derived announcement on the local network).
// code is checked as ParseCode does; expires is only what the new device
// assumes (the issuer's Tracker enforces the real expiry).
func InvitationFromCode(code string, issuerKey core.PublicKey, addrs []string, expires time.Time) (Invitation, error) {
	c, err := ParseCode(code)
	if err != nil {
		return Invitation{}, err
	}
	if _, err := identity.NoisePublicFor(issuerKey); err != nil {
		return Invitation{}, fmt.Errorf("%w: invitation key is not a curve point", ErrMalformed)
	}
	if err := checkAddrs(addrs); err != nil {
		return Invitation{}, fmt.Errorf("%w: invitation %v", ErrMalformed, err)
	}
	return Invitation{
		Issuer: core.DeviceIDFromKey(issuerKey), IssuerKey: issuerKey,
		Addrs: append([]string(nil), addrs...), Expires: time.Unix(expires.Unix(), 0).UTC(), code: c,
	}, nil
}
