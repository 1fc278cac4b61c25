package discovery

import (
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// Signer signs announcements as this device. *identity.Identity is one.
// Implementations are safe for concurrent use.
type Signer interface {
	// DeviceID returns this device's id.
	DeviceID() core.DeviceID
	// PublicKey returns this device's identity key (DeviceID is its hash).
	PublicKey() core.PublicKey
	// Sign signs msg with this device's Ed25519 identity key.
	Sign(msg []byte) []byte
}

// Mesh is what a mechanism reads from the node. Every mechanism calls it at
// each announcement and lookup, so rotations, revocations and address
// changes take effect at once. Implementations are safe for concurrent use
// and do not block (they read the node's in-memory state).
type Mesh interface {
	Signer
	// Secret returns the current mesh secret generation, or an error
	// wrapping ErrNoSecret when this device holds none (not yet paired, or
	// revoked).
	Secret() (registry.Secret, error)
	// TrustedKey returns the identity key of a device this one syncs with;
	// false for unknown, pending and revoked devices.
	TrustedKey(id core.DeviceID) (core.PublicKey, bool)
	// Addrs returns the addresses this device is reachable at now (the
	// caller owns the slice).
	Addrs() []string
}
