package registry

import (
	"bytes"
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// The New* methods build an operation by the device id at HLC time at,
// chain it to id's previous operation, sign it and check it with Verify.
// They do not apply it: the caller applies the returned operation to its
// State and replicates it. at must be later than s.Latest(), as an HLC that
// observed the registry's operations guarantees.

// NewAdd returns an operation adding d (ID derives from d.PublicKey; Trust
// pending, trusted or owner; LastSeen, RevokedAt and UpdatedAt ignored).
// Adding a known device with a higher trust level approves it.
func (s *State) NewAdd(id *identity.Identity, at core.Timestamp, d Device) (Op, error) {
	return s.build(id, Op{
		Kind: OpAdd, At: at, Target: core.DeviceIDFromKey(d.PublicKey), TargetKey: d.PublicKey,
		Trust: d.Trust, Type: d.Type, Name: d.Name, Policy: bytes.Clone(d.Policy),
	})
}

// NewRevoke returns an operation revoking target. Its cutoff acknowledges
// the target's operations s holds now; any other operation of the target
// is void once the revocation takes effect.
func (s *State) NewRevoke(id *identity.Identity, at core.Timestamp, target core.DeviceID) (Op, error) {
	return s.build(id, Op{Kind: OpRevoke, At: at, Target: target, Cutoff: s.head(target)})
}

// NewRename returns an operation renaming target.
func (s *State) NewRename(id *identity.Identity, at core.Timestamp, target core.DeviceID, name string) (Op, error) {
	return s.build(id, Op{Kind: OpRename, At: at, Target: target, Name: name})
}

// NewSetPolicy returns an operation setting target's sync policy.
func (s *State) NewSetPolicy(id *identity.Identity, at core.Timestamp, target core.DeviceID, policy []byte) (Op, error) {
	return s.build(id, Op{Kind: OpSetPolicy, At: at, Target: target, Policy: bytes.Clone(policy)})
}

func (s *State) build(id *identity.Identity, op Op) (Op, error) {
	if op.At <= s.Latest() {
		return Op{}, fmt.Errorf("%w: %s at %s is not after the registry's latest operation %s", ErrInvalidOp, op.Kind, op.At, s.Latest())
	}
	op.Prev = s.head(id.DeviceID())
	if err := op.validate(); err != nil {
		return Op{}, err
	}
	op.sign(id)
	if err := Verify(op, s); err != nil {
		return Op{}, err
	}
	return op, nil
}
