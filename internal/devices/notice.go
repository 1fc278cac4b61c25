package devices

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/registry"
)

// A revoked device is cut off by every device of the mesh, so the
// registry operation that revoked it never reaches it through sync. It
// learns of it from the refusal instead: a device that refuses a revoked
// peer's handshake hands it the signed revocation as a notice
// (core.NoticeError, carried by the transport's refusal). The notice is
// self-authenticating: the revoked device accepts it only when it is a
// correctly signed revocation of itself by a device its own registry
// allows to revoke (registry.Verify), then commits it to its registry as
// any operation, so its own registry says it is revoked, and it stops
// dialling (Config.SelfRevoked).

// notices caches, per revoked device, the encoding of the effective
// operation that revoked it. It has its own lock: the transport's
// authorizer reads it without the write lock.
type notices struct {
	mu sync.Mutex
	m  map[core.DeviceID][]byte
}

// ErrNotANotice refuses a notice that is not a signed revocation of this
// device by a device allowed to revoke it.
var ErrNotANotice = errors.New("not a revocation notice for this device")

// Notice returns the signed operation that revoked id, for the refusal
// that the transport sends it (nil when id is not revoked here).
func (n *Registry) Notice(id core.DeviceID) []byte {
	n.notices.mu.Lock()
	defer n.notices.mu.Unlock()
	return n.notices.m[id]
}

// noteRevocations records the effective revocation of each revoked device
// (called by foldOps with the write lock held).
func (n *Registry) noteRevocations() {
	ops := n.reg.Ops()
	n.notices.mu.Lock()
	defer n.notices.mu.Unlock()
	if n.notices.m == nil {
		n.notices.m = map[core.DeviceID][]byte{}
	}
	for _, op := range ops {
		if op.Kind != registry.OpRevoke || !n.reg.Effective(op.Hash()) {
			continue
		}
		if _, ok := n.notices.m[op.Target]; !ok {
			n.notices.m[op.Target] = op.Marshal()
		}
	}
}

// AcceptNotice checks a notice received with a refusal from peer and, when
// it is a signed revocation of this device that this device's registry
// admits, commits it. It reports whether this device is now revoked.
func (n *Registry) AcceptNotice(ctx context.Context, peer core.DeviceID, b []byte) (bool, error) {
	op, err := registry.UnmarshalOp(b)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrNotANotice, err)
	}
	if op.Kind != registry.OpRevoke || op.Target != n.self() {
		return false, fmt.Errorf("%w: %s of %s", ErrNotANotice, op.Kind, op.Target.Short())
	}
	err = n.cfg.Replica.Update(ctx, "revocation notice", func(context.Context) ([]replica.Op, error) {
		if n.reg == nil {
			return nil, fmt.Errorf("%w: no mesh here", ErrNotANotice)
		}
		if n.reg.Has(op.Hash()) {
			return nil, nil
		}
		if err := registry.Verify(op, n.reg); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotANotice, err)
		}
		return writeOp(op), nil
	})
	if err != nil {
		return false, err
	}
	n.log.Warn("this device was revoked", "by", op.Author().Short(), "notice from", peer.Short())
	return true, nil
}

// selfRevoked reports, once, that this device's registry revoked it
// (called by foldOps with the write lock held); the caller runs the
// returned function once the lock is released.
func (n *Registry) selfRevoked() func() {
	d, ok := n.reg.Device(n.self())
	if !ok || d.Trust != registry.TrustRevoked || n.cfg.SelfRevoked == nil {
		return nil
	}
	if _, done := n.reported[n.self()]; done {
		return nil
	}
	n.reported[n.self()] = struct{}{}
	var by core.DeviceID
	for _, op := range n.reg.Ops() {
		if op.Kind == registry.OpRevoke && op.Target == n.self() && n.reg.Effective(op.Hash()) {
			by = op.Author()
			break
		}
	}
	return func() { n.cfg.SelfRevoked(by) }
}
