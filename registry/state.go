package registry

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// MaxOps bounds the operations a State holds, so a hostile peer cannot make
// it grow without limit.
const MaxOps = 10000

// State is the replicated device registry: a pure state machine over a set
// of signed operations. Its devices are a deterministic function of that
// set, so replicas that applied the same operations, in any order and with
// any duplicates, are identical (see the package doc for the rules).
//
// A State is not safe for concurrent use; its owner serializes access.
type State struct {
	genesis OpHash
	ops     map[OpHash]*stored

	// Derived by replay.
	view      *view
	effective map[OpHash]bool
	order     []*stored
}

type stored struct {
	op     Op
	hash   OpHash
	author core.DeviceID // cached op.Author()
}

// Genesis returns the operation that founds a mesh: the founding device
// adds itself as owner. Every replica of the mesh starts from it.
func Genesis(founder *identity.Identity, at core.Timestamp, name string, typ DeviceType, policy []byte) (Op, error) {
	op := Op{
		Kind: OpAdd, At: at, Target: founder.DeviceID(), TargetKey: founder.PublicKey(),
		Trust: TrustOwner, Type: typ, Name: name, Policy: bytes.Clone(policy),
	}
	if err := op.validate(); err != nil {
		return Op{}, err
	}
	op.sign(founder)
	return op, nil
}

// NewState returns the registry founded by genesis (see Genesis).
func NewState(genesis Op) (*State, error) {
	if err := genesis.check(); err != nil {
		return nil, fmt.Errorf("registry genesis: %w", err)
	}
	if genesis.Kind != OpAdd || genesis.Target != genesis.Author() || genesis.Trust != TrustOwner || genesis.Prev != (OpHash{}) {
		return nil, fmt.Errorf("registry genesis: %w: not a founder adding itself as owner", ErrInvalidOp)
	}
	h := genesis.Hash()
	s := &State{genesis: h, ops: map[OpHash]*stored{h: {op: cloneOp(genesis), hash: h, author: genesis.Author()}}}
	s.replay()
	return s, nil
}

// MeshID identifies the mesh: the hash of its genesis operation.
func (s *State) MeshID() OpHash { return s.genesis }

// Verify checks op against the registry as s sees it now: it must be well
// formed and signed by its author (ErrUnsigned, ErrForged), and its author
// must be allowed to make it (ErrNotAllowed, ErrRevoked): only trusted and
// owner devices may act, only owners grant owner, and nothing brings back a
// revoked device. Any trusted device may revoke any other, owners included,
// so that a lost device can be revoked from whichever device the user still
// holds, and a revocation wins over a concurrent owner grant. All refusals wrap
// core.ErrUnauthorized or core.ErrInvalidArgument.
//
// Verify is the ingress check for an operation arriving now. State.Apply
// instead keeps every correctly signed operation and decides its effect
// by the same rules at its place in the deterministic order, because an
// operation by a device whose addition has not arrived yet becomes valid
// later.
func Verify(op Op, s *State) error {
	if err := op.check(); err != nil {
		return err
	}
	if op.Hash() == s.genesis {
		return nil
	}
	return s.view.permit(&op, op.Author())
}

// Apply adds a signed operation to the set and recomputes the registry. It
// reports whether the set changed (false for a duplicate). A malformed,
// unsigned or forged operation is refused and not kept; a correctly signed
// one is kept even when it has no effect now (see Effective).
func (s *State) Apply(op Op) (bool, error) {
	n, err := s.ApplyAll([]Op{op})
	return n > 0, err
}

// ApplyAll is Apply for many operations with a single recomputation. It
// returns how many were new; on the first refused operation it stops (those
// before it stay applied).
func (s *State) ApplyAll(ops []Op) (int, error) {
	added := 0
	var err error
	for i := range ops {
		// A duplicate is skipped before the signature check: the copy kept
		// already verified, and the hash covers everything but the signature.
		h := ops[i].Hash()
		if _, dup := s.ops[h]; dup {
			continue
		}
		if err = ops[i].check(); err != nil {
			break
		}
		if len(s.ops) >= MaxOps {
			err = ErrTooManyOps
			break
		}
		s.ops[h] = &stored{op: cloneOp(ops[i]), hash: h, author: ops[i].Author()}
		added++
	}
	if added > 0 {
		s.replay()
	}
	if err != nil {
		return added, fmt.Errorf("registry apply: %w", err)
	}
	return added, nil
}

// Has reports whether the operation is in the set.
func (s *State) Has(h OpHash) bool { _, ok := s.ops[h]; return ok }

// Effective reports whether the operation took effect (it is in the set and
// its author was allowed to make it at its place in the order).
func (s *State) Effective(h OpHash) bool { return s.effective[h] }

// Len returns the number of operations in the set.
func (s *State) Len() int { return len(s.ops) }

// Ops returns every operation in the set in the deterministic replay order,
// for persistence and for sending to peers.
func (s *State) Ops() []Op {
	out := make([]Op, len(s.order))
	for i, st := range s.order {
		out[i] = cloneOp(st.op)
	}
	return out
}

// Latest returns the largest operation timestamp in the set; feed it to
// the device's HLC before making a new operation.
func (s *State) Latest() core.Timestamp {
	if len(s.order) == 0 {
		return 0
	}
	return s.order[len(s.order)-1].op.At
}

// Devices returns every device the registry knows, revoked ones included,
// sorted by id.
func (s *State) Devices() []Device {
	out := make([]Device, 0, len(s.view.devices))
	for _, d := range s.view.devices {
		out = append(out, cloneDevice(*d))
	}
	slices.SortFunc(out, func(a, b Device) int { return a.ID.Compare(b.ID) })
	return out
}

// Device returns the registry's record of id.
func (s *State) Device(id core.DeviceID) (Device, bool) {
	d, ok := s.view.devices[id]
	if !ok {
		return Device{}, false
	}
	return cloneDevice(*d), true
}

// head returns the hash of author's latest operation in the set (zero when
// it has none), the Prev of its next one.
func (s *State) head(author core.DeviceID) OpHash {
	for i := len(s.order) - 1; i >= 0; i-- {
		if st := s.order[i]; st.author == author {
			return st.hash
		}
	}
	return OpHash{}
}

// replay recomputes the registry from the set of operations. Operations run
// in (At, Author, hash) order, each taking effect only if permitted by the
// registry as it stands at that point.
//
// Revocations are settled one at a time, and each is final: once a
// revocation of X is settled, X's operations count only when they lie on
// the chain its revoker acknowledged (Cutoff), wherever they sit in the
// order, and replay starts over. A pass applies only settled revocations;
// among the permitted revocations of unsettled devices it settles an
// owner's first, then the earliest. So when an owner and a stolen trusted
// device revoke each other concurrently, the owner's revocation wins,
// whatever the thief wrote as its timestamp. Replay ends after one pass
// per revoked device, plus one.
func (s *State) replay() {
	s.order = s.sorted()
	final := map[core.DeviceID]revocation{}
	for {
		v, eff, next := s.pass(final)
		if next == nil {
			for id, r := range final {
				v.revoke(id, r.at)
			}
			s.view, s.effective = v, eff
			return
		}
		final[next.op.Target] = revocation{at: next.op.At, anchored: s.chain(next.op.Target, next.op.Cutoff)}
	}
}

// revocation is a settled revocation: when, and which of the revoked
// device's operations still count.
type revocation struct {
	at       core.Timestamp
	anchored map[OpHash]bool
}

func (s *State) sorted() []*stored {
	order := make([]*stored, 0, len(s.ops))
	for _, st := range s.ops {
		order = append(order, st)
	}
	slices.SortFunc(order, func(a, b *stored) int {
		if c := cmp.Compare(a.op.At, b.op.At); c != 0 {
			return c
		}
		if c := a.author.Compare(b.author); c != 0 {
			return c
		}
		return bytes.Compare(a.hash[:], b.hash[:])
	})
	return order
}

// pass replays the order once under the settled revocations. It returns
// the resulting view, the effective operations and the revocation to
// settle next (nil when none is pending).
func (s *State) pass(final map[core.DeviceID]revocation) (*view, map[OpHash]bool, *stored) {
	v := &view{devices: map[core.DeviceID]*Device{}}
	eff := map[OpHash]bool{}
	var next *stored
	nextByOwner := false
	for _, st := range s.order {
		op := &st.op
		if st.hash != s.genesis {
			if r, ok := final[st.author]; ok && !r.anchored[st.hash] {
				continue
			}
			if v.permit(op, st.author) != nil {
				continue
			}
		}
		eff[st.hash] = true
		if _, settled := final[op.Target]; op.Kind == OpRevoke && !settled {
			byOwner := v.devices[st.author].Trust == TrustOwner
			if next == nil || (byOwner && !nextByOwner) {
				next, nextByOwner = st, byOwner
			}
			continue
		}
		v.apply(op)
	}
	return v, eff, next
}

// chain returns the operations by author reachable from h through Prev.
func (s *State) chain(author core.DeviceID, h OpHash) map[OpHash]bool {
	out := map[OpHash]bool{}
	for h != (OpHash{}) && !out[h] {
		st, ok := s.ops[h]
		if !ok || st.author != author {
			break
		}
		out[h] = true
		h = st.op.Prev
	}
	return out
}

// view is the registry at one point of a replay.
type view struct {
	devices map[core.DeviceID]*Device
	secret  *Op // the current mesh secret generation
}

// permit decides whether op's author (authorID, op.Author()) may make it,
// given the registry as v describes it.
func (v *view) permit(op *Op, authorID core.DeviceID) error {
	author, ok := v.devices[authorID]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s by unknown device %s", ErrNotAllowed, op.Kind, authorID.Short())
	case author.Trust == TrustRevoked:
		return fmt.Errorf("%w: %s by revoked device %s", ErrRevoked, op.Kind, authorID.Short())
	case !author.Trust.CanSync():
		return fmt.Errorf("%w: %s by %s device %s", ErrNotAllowed, op.Kind, author.Trust, authorID.Short())
	}
	target, known := v.devices[op.Target]
	switch op.Kind {
	case OpAdd:
		if known && target.Trust == TrustRevoked {
			return fmt.Errorf("%w: cannot add back %s", ErrRevoked, op.Target.Short())
		}
		if op.Trust == TrustOwner && author.Trust != TrustOwner {
			return fmt.Errorf("%w: only an owner grants owner", ErrNotAllowed)
		}
	case OpRename, OpSetPolicy:
		if !known {
			return fmt.Errorf("%w: %s of unknown device %s", ErrNotAllowed, op.Kind, op.Target.Short())
		}
		if target.Trust == TrustRevoked {
			return fmt.Errorf("%w: %s of %s", ErrRevoked, op.Kind, op.Target.Short())
		}
	case OpRotateSecret:
		for _, r := range op.Sealed {
			d, ok := v.devices[r.Device]
			if !ok || d.Trust == TrustRevoked {
				return fmt.Errorf("%w: secret sealed to unknown or revoked device %s", ErrNotAllowed, r.Device.Short())
			}
		}
	}
	return nil
}

// apply performs a permitted operation. Because replay runs in
// (At, Author, hash) order, plain assignment makes names and policies
// last-writer-wins by (timestamp, author).
func (v *view) apply(op *Op) {
	d := v.devices[op.Target]
	switch op.Kind {
	case OpAdd:
		if d == nil {
			d = &Device{ID: op.Target, PublicKey: op.TargetKey}
			v.devices[op.Target] = d
		}
		d.PublicKey = op.TargetKey
		d.Trust = max(d.Trust, op.Trust)
		d.Name, d.Type, d.Policy, d.UpdatedAt = op.Name, op.Type, op.Policy, op.At
	case OpRevoke:
		v.revoke(op.Target, op.At)
	case OpRename:
		d.Name, d.UpdatedAt = op.Name, op.At
	case OpSetPolicy:
		d.Policy, d.UpdatedAt = op.Policy, op.At
	case OpRotateSecret:
		if v.secret == nil || op.Generation >= v.secret.Generation {
			v.secret = op
		}
	}
}

// revoke marks id revoked at at; an earlier revocation keeps its time.
func (v *view) revoke(id core.DeviceID, at core.Timestamp) {
	d := v.devices[id]
	if d == nil {
		d = &Device{ID: id}
		v.devices[id] = d
	}
	if d.Trust != TrustRevoked {
		d.Trust, d.RevokedAt, d.UpdatedAt = TrustRevoked, at, max(d.UpdatedAt, at)
	}
}

func cloneOp(o Op) Op {
	o.Policy = bytes.Clone(o.Policy)
	o.Sealed = slices.Clone(o.Sealed)
	o.Sig = bytes.Clone(o.Sig)
	return o
}

func cloneDevice(d Device) Device {
	d.Policy = bytes.Clone(d.Policy)
	return d
}
