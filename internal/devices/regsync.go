package devices

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/registry"
)

// Registry replication. Changes to the set of the user's devices (a device
// added by pairing, a device revoked) are operations signed by the device
// that makes them (package registry). They travel like data: each is a
// record of the internal collection _fed.registry, keyed by the hash of the
// operation, synced immediately with high priority. Every device folds the
// operations it holds into the same registry state (registry.State
// converges whatever the order; a revocation wins over a concurrent add),
// writes it to its device_registry table, which decides who may connect,
// and closes its sessions with any device that state revokes. An operation
// whose signature does not verify is refused with the transaction that
// carried it, and the refusal is audited.
//
// The first device to invite another founds the mesh (its genesis
// operation); devices that join receive the mesh's operations by sync.

// Collection holds the signed registry operations (synced).
const Collection = replica.InternalPrefix + "registry"

// ErrForgedOperation reports a registry operation whose signature does not
// verify, or whose record does not match it.
var ErrForgedOperation = errors.New("forged registry operation")

// Load rebuilds the registry state from the stored operations, before the
// node runs. Devices it finds revoked count as cut off already: no session
// runs yet, and the device table refuses them.
func (n *Registry) Load(ctx context.Context, st Records) error {
	var ops []registry.Op
	err := st.Scan(ctx, Collection, core.KeyRange{}, func(r core.Record) error {
		op, err := registry.UnmarshalOp(r.Value)
		if err != nil {
			return fmt.Errorf("load registry: %w", err)
		}
		ops = append(ops, op)
		return nil
	})
	if err != nil {
		return err
	}
	n.foldOps(ctx, ops, false) // audited when they were first applied
	if n.reg != nil {
		if self := n.selfRevoked(); self != nil {
			self()
		}
	}
	return nil
}

// Committed folds the registry operations of a commit into the registry
// state, under the write lock (replica.Observer); the sessions of devices
// it revokes are closed by the function it returns, which the replica runs
// after the lock is released.
func (n *Registry) Committed(c replica.Commit) func() {
	revoked := n.foldOps(context.Background(), registryOps(c.Records), true)
	var self func()
	if n.reg != nil {
		self = n.selfRevoked()
	}
	if len(revoked) == 0 && self == nil {
		return nil
	}
	return func() {
		for _, d := range revoked {
			n.cutOff(d)
		}
		if self != nil {
			self()
		}
	}
}

// foldOps applies operations to the registry state (founding it from a
// genesis among them if there is none yet) and writes the resulting devices
// to the registry table. With audited, each
// operation that enters the registry state (made here or received from a
// peer, the genesis included) is appended to the audit log. It returns the
// revoked devices to cut off, each once, which the caller does once the
// write lock is released. Called with the write lock held, or before the
// node runs.
func (n *Registry) foldOps(ctx context.Context, ops []registry.Op, audited bool) (revoked []core.DeviceID) {
	if len(ops) == 0 {
		return nil
	}
	var fresh []registry.Op // not in the state before this call
	if n.reg == nil {
		for _, op := range ops {
			if s, err := registry.NewState(op); err == nil {
				n.reg = s
				fresh = append(fresh, op)
				break
			}
		}
		if n.reg == nil {
			n.pendingOps = append(n.pendingOps, ops...)
			return nil
		}
		ops = append(n.pendingOps, ops...)
		n.pendingOps = nil
	}
	seen := map[registry.OpHash]bool{}
	for _, op := range fresh {
		seen[op.Hash()] = true
	}
	for _, op := range ops {
		if h := op.Hash(); !seen[h] && !n.reg.Has(h) {
			seen[h] = true
			fresh = append(fresh, op)
		}
	}
	added, err := n.reg.ApplyAll(ops)
	if err != nil {
		n.log.Warn("registry operation refused", "err", err)
	}
	if audited {
		for _, op := range fresh {
			if n.reg.Has(op.Hash()) {
				n.record(ctx, op.AuditEntry())
			}
		}
	}
	if added == 0 {
		return nil
	}
	if err := registry.Save(ctx, n.cfg.Trust.devices, n.reg); err != nil {
		n.log.Warn("save registry", "err", err)
	}
	n.noteRevocations()
	for _, d := range n.reg.Devices() {
		if _, done := n.reported[d.ID]; d.Trust == registry.TrustRevoked && d.ID != n.self() && !done {
			n.reported[d.ID] = struct{}{}
			revoked = append(revoked, d.ID)
		}
	}
	return revoked
}

// Check is the ingress check for internal records arriving from a peer
// (from is their origin), run by the commit pipeline once it checked and
// learned the replica announcements among them (internal/replica). Each
// registry record must hold a well-formed operation, keyed by its hash,
// whose signature verifies. Operations whose author is not (yet) allowed
// are kept: registry.State decides their effect. Audit heads are checked
// by the node after it (internal/anchor). Called with the write lock held.
func (n *Registry) Check(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	for _, r := range recs {
		if r.Collection != Collection || r.Deleted {
			continue
		}
		op, err := registry.UnmarshalOp(r.Value)
		if h := op.Hash(); err == nil && hex.EncodeToString(h[:]) != r.Key {
			err = fmt.Errorf("record key does not match the operation")
		}
		if err == nil && n.reg != nil {
			if verr := registry.Verify(op, n.reg); errors.Is(verr, registry.ErrForged) || errors.Is(verr, registry.ErrUnsigned) || errors.Is(verr, registry.ErrMalformed) {
				err = verr
			}
		}
		if err != nil {
			n.record(ctx, audit.Refusal(n.cfg.Replica.OriginDevice(from), "forged-registry-op"))
			return fmt.Errorf("%w: %w: %v", core.ErrProtocol, ErrForgedOperation, err)
		}
	}
	return nil
}

// registryOps extracts the operations among committed records.
func registryOps(recs []core.Record) []registry.Op {
	var ops []registry.Op
	for _, r := range recs {
		if r.Collection != Collection || r.Deleted {
			continue
		}
		if op, err := registry.UnmarshalOp(r.Value); err == nil {
			ops = append(ops, op)
		}
	}
	return ops
}

// writeOp is the write that commits a registry operation made by this
// device.
func writeOp(op registry.Op) []replica.Op {
	h := op.Hash()
	return []replica.Op{{Collection: Collection, Key: hex.EncodeToString(h[:]), Value: op.Marshal()}}
}

// EnsureMesh founds the mesh with this device as owner if it belongs to
// none yet.
func (n *Registry) EnsureMesh(ctx context.Context) error {
	if err := n.cfg.Replica.Update(ctx, "found mesh", func(context.Context) ([]replica.Op, error) {
		if n.reg != nil {
			return nil, nil
		}
		ts, err := n.cfg.HLC.Now()
		if err != nil {
			return nil, err
		}
		op, err := registry.Genesis(n.cfg.Identity, ts, n.cfg.Name, n.cfg.Type, nil)
		if err != nil {
			return nil, err
		}
		return writeOp(op), nil
	}); err != nil {
		return err
	}
	var need bool
	if err := n.cfg.Replica.Exclusive(ctx, "found mesh", func() error { need = n.reg != nil && n.reg.Generation() == 0; return nil }); err != nil {
		return err
	}
	if !need {
		return nil
	}
	return n.RotateSecret(ctx)
}

// RotateSecret installs a new generation of the mesh secret, sealed to the
// devices the registry trusts now (and so to no revoked one).
func (n *Registry) RotateSecret(ctx context.Context) error {
	return n.meshOp(ctx, false, func(ts core.Timestamp) (registry.Op, error) {
		return n.reg.NewRotation(n.cfg.Identity, ts, n.cfg.Rand)
	})
}

// MeshSecret returns the current generation of the mesh secret, the key
// from which the user's devices derive private discovery tokens and relay
// mailbox keys. A revoked device never receives a generation issued after
// its revocation. It fails with core.ErrUnauthorized-wrapped errors when
// this device holds no generation.
func (n *Registry) MeshSecret() (registry.Secret, error) {
	var s registry.Secret
	err := n.cfg.Replica.Exclusive(context.Background(), "mesh secret", func() (err error) {
		if n.reg == nil {
			return fmt.Errorf("mesh secret: %w", registry.ErrNoSecret)
		}
		s, err = n.reg.OpenSecret(n.cfg.Identity)
		return err
	})
	return s, err
}

// Add records, as a signed operation, that a paired device joined.
func (n *Registry) Add(ctx context.Context, key core.PublicKey, name string, typ registry.DeviceType) error {
	return n.meshOp(ctx, false, func(ts core.Timestamp) (registry.Op, error) {
		return n.reg.NewAdd(n.cfg.Identity, ts, registry.Device{PublicKey: key, Name: name, Type: typ, Trust: registry.TrustTrusted})
	})
}

// revokeInMesh records a revocation as a signed operation, so that every
// device of the mesh cuts the device off, then rotates the mesh secret so
// that only the remaining devices hold the new generation.
func (n *Registry) revokeInMesh(ctx context.Context, id core.DeviceID) error {
	err := n.meshOp(ctx, false, func(ts core.Timestamp) (registry.Op, error) {
		if _, known := n.reg.Device(id); !known {
			return registry.Op{}, errSkip
		}
		return n.reg.NewRevoke(n.cfg.Identity, ts, id)
	})
	if err != nil {
		return err
	}
	return n.RotateSecret(ctx)
}

// errSkip lets a meshOp builder decline to make an operation.
var errSkip = errors.New("no operation")

// Rename renames a device of the mesh ("Anna's old phone"), as a
// signed operation replicated to every device (last writer wins).
func (n *Registry) Rename(ctx context.Context, id core.DeviceID, name string) error {
	return n.meshOp(ctx, true, func(ts core.Timestamp) (registry.Op, error) { return n.reg.NewRename(n.cfg.Identity, ts, id, name) })
}

// SetPolicy sets a device's sync policy (opaque bytes, normally
// JSON, interpreted by the host and the policy layer), as a signed
// operation replicated to every device (last writer wins).
func (n *Registry) SetPolicy(ctx context.Context, id core.DeviceID, policy []byte) error {
	return n.meshOp(ctx, true, func(ts core.Timestamp) (registry.Op, error) {
		return n.reg.NewSetPolicy(n.cfg.Identity, ts, id, policy)
	})
}

// meshOp commits one operation built by mk against the current registry.
// With no mesh yet it fails when required, and does nothing otherwise.
func (n *Registry) meshOp(ctx context.Context, required bool, mk func(core.Timestamp) (registry.Op, error)) error {
	return n.cfg.Replica.Update(ctx, "registry operation", func(context.Context) ([]replica.Op, error) {
		if n.reg == nil {
			if required {
				return nil, fmt.Errorf("%w: this device belongs to no mesh yet (Invite or Join first)", core.ErrInvalidArgument)
			}
			return nil, nil
		}
		ts, err := n.cfg.HLC.Now()
		if err != nil {
			return nil, err
		}
		// An operation must follow the registry's latest, which a peer
		// whose clock runs ahead may have stamped beyond this device's
		// clock (which does not follow it past the drift bound): stamp it
		// just after, as a clock that followed would have.
		if latest := n.reg.Latest(); ts <= latest {
			ts = latest + 1
		}
		op, err := mk(ts)
		if errors.Is(err, errSkip) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return writeOp(op), nil
	})
}
