package registry

import (
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
)

// TrustLevel is how far the mesh trusts a device.
type TrustLevel uint8

// Trust levels, lowest first. TrustRevoked is terminal: no operation takes
// a revoked device back. The numbers are stored (operations, the
// trust_level column): never renumber them.
const (
	// TrustPending: known (pairing requested) but not approved; it may not
	// sync or make registry operations.
	TrustPending TrustLevel = iota + 1
	// TrustTrusted: an approved device; it syncs and may add, revoke and
	// rename devices.
	TrustTrusted
	// TrustOwner: a trusted device that may also grant owner and revoke
	// owners.
	TrustOwner
	// TrustRevoked: removed from the mesh for good.
	TrustRevoked
)

// String names the trust level as stored in the registry table.
func (t TrustLevel) String() string {
	switch t {
	case TrustPending:
		return "pending"
	case TrustTrusted:
		return "trusted"
	case TrustOwner:
		return "owner"
	case TrustRevoked:
		return "revoked"
	}
	return fmt.Sprintf("trust(%d)", uint8(t))
}

// CanSync reports whether a device at this level may hold a sync session
// and make registry operations.
func (t TrustLevel) CanSync() bool { return t == TrustTrusted || t == TrustOwner }

// ParseTrustLevel is the inverse of TrustLevel.String.
func ParseTrustLevel(s string) (TrustLevel, error) {
	for t := TrustPending; t <= TrustRevoked; t++ {
		if t.String() == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: trust level %q", ErrMalformed, s)
}

// DeviceType is the kind of hardware, for display and default policies.
type DeviceType uint8

// Device types.
const (
	TypeUnknown DeviceType = iota
	TypePhone
	TypeTablet
	TypeLaptop
	TypeDesktop
	TypeServer
	typeEnd
)

var typeNames = [...]string{"unknown", "phone", "tablet", "laptop", "desktop", "server"}

// String names the device type as stored in the registry table.
func (t DeviceType) String() string {
	if t >= typeEnd {
		return fmt.Sprintf("type(%d)", uint8(t))
	}
	return typeNames[t]
}

// ParseDeviceType is the inverse of DeviceType.String.
func ParseDeviceType(s string) (DeviceType, error) {
	for t := TypeUnknown; t < typeEnd; t++ {
		if typeNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: device type %q", ErrMalformed, s)
}

// Device is one row of the device registry.
type Device struct {
	// ID is the SHA-256 of PublicKey.
	ID core.DeviceID
	// Name is the user's label for the device ("Anna's phone").
	Name string
	// Type is the kind of hardware.
	Type DeviceType
	// PublicKey is the device's Ed25519 key, pinned at pairing.
	PublicKey core.PublicKey
	// LastSeen is when this device last heard from it. It is local
	// bookkeeping (see Store.Touch), not replicated.
	LastSeen time.Time
	// Trust is the device's trust level.
	Trust TrustLevel
	// Policy is the device's sync policy, opaque to the registry (JSON).
	Policy []byte
	// RevokedAt is the HLC time of the revocation (0: not revoked).
	RevokedAt core.Timestamp
	// UpdatedAt is the HLC time of the last operation that changed the
	// record.
	UpdatedAt core.Timestamp
}
