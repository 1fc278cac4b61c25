package federation

import (
	"context"

	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/registry"
)

// The node's side of internal/devices: the host API over the replicated
// device registry (signed operations synced in _fed.registry, folded into
// one registry state) and over the session admission that follows from it,
// and the adapters through which that package reaches the node.

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

// TrustDevice admits the device owning key to sessions with this node,
// without the pairing ceremony: for hosts that provision device keys
// themselves, and for tests. Prefer Invite and Join. A revoked device stays
// revoked. The admission is kept in the device registry's table, so it
// lasts only until Close when the store has no core.SQLStore.
func (n *Node) TrustDevice(key PublicKey) { _ = n.c.Trust.Admit(context.Background(), key, "device") }

// RevokeDevice cuts a device off: it is marked revoked in the registry
// (terminal: it can never be trusted again), its live sessions are closed
// at once, and it is refused from then on.
func (n *Node) RevokeDevice(ctx context.Context, id DeviceID) error { return n.c.Reg.Revoke(ctx, id) }

// Devices lists the device registry, sorted by id.
func (n *Node) Devices(ctx context.Context) ([]Device, error) { return n.c.Trust.List(ctx) }

// ErrForgedOperation reports a registry operation whose signature does not
// verify, or whose record does not match it.
var ErrForgedOperation = devices.ErrForgedOperation

// registryCollection holds the signed registry operations (synced).
const registryCollection = devices.Collection

// MeshSecret returns the current generation of the mesh secret, the key
// from which the user's devices derive private discovery tokens and relay
// mailbox keys. A revoked device never receives a generation issued after
// its revocation. It fails with core.ErrUnauthorized-wrapped errors when
// this device holds no generation.
func (n *Node) MeshSecret() (registry.Secret, error) { return n.c.Reg.MeshSecret() }

// RenameDevice renames a device of the mesh ("Anna's old phone"), as a
// signed operation replicated to every device (last writer wins).
func (n *Node) RenameDevice(ctx context.Context, id DeviceID, name string) error {
	return n.c.Reg.Rename(ctx, id, name)
}

// SetDevicePolicy sets a device's sync policy (opaque bytes, normally
// JSON, interpreted by the host and the policy layer), as a signed
// operation replicated to every device (last writer wins).
func (n *Node) SetDevicePolicy(ctx context.Context, id DeviceID, policy []byte) error {
	return n.c.Reg.SetPolicy(ctx, id, policy)
}
