package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// summary is everything a replica exposes, for comparing replicas.
type summary struct {
	Devices   []Device
	Gen       uint64
	Secret    OpHash
	Needs     bool
	Effective []OpHash
	Ops       []OpHash
}

func summarize(s *State) summary {
	sum := summary{Devices: s.Devices(), Gen: s.Generation(), Needs: s.NeedsRotation()}
	if s.view.secret != nil {
		sum.Secret = s.view.secret.Hash()
	}
	for _, op := range s.Ops() {
		h := op.Hash()
		sum.Ops = append(sum.Ops, h)
		if s.Effective(h) {
			sum.Effective = append(sum.Effective, h)
		}
	}
	return sum
}

// deliver builds a fresh replica from genesis and applies ops in a random
// order, with random duplicates, in random batch sizes.
func deliver(t *rapid.T, genesis Op, ops []Op, label string) *State {
	s, err := NewState(genesis)
	if err != nil {
		t.Fatal(err)
	}
	var stream []Op
	for _, i := range rapid.Permutation(seq(len(ops))).Draw(t, label+" order") {
		stream = append(stream, ops[i])
	}
	for _, i := range rapid.SliceOfN(rapid.IntRange(0, len(ops)-1), 0, len(ops)).Draw(t, label+" duplicates") {
		at := rapid.IntRange(0, len(stream)).Draw(t, label+" duplicate position")
		stream = slices.Insert(stream, at, ops[i])
	}
	for len(stream) > 0 {
		n := rapid.IntRange(1, len(stream)).Draw(t, label+" batch")
		if _, err := s.ApplyAll(stream[:n]); err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		stream = stream[n:]
	}
	return s
}

// world is a few authoring replicas, each acting as one device, that make
// operations concurrently and sync partially.
type world struct {
	ids     []*identity.Identity
	genesis Op
	reps    []*State
	last    []core.Timestamp
	all     []Op
}

func newWorld(t *rapid.T, ids []*identity.Identity, replicas int) *world {
	g, err := Genesis(ids[0], ts(0), "founder", TypeLaptop, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ids: ids, genesis: g, all: []Op{g}, last: make([]core.Timestamp, replicas)}
	for i := 0; i < replicas; i++ {
		s, err := NewState(g)
		if err != nil {
			t.Fatal(err)
		}
		w.reps = append(w.reps, s)
	}
	return w
}

// now returns a timestamp for replica r: after everything it has seen,
// with small steps so that replicas often tie.
func (w *world) now(t *rapid.T, r int) core.Timestamp {
	at := max(w.reps[r].Latest(), w.last[r]) + core.Timestamp(rapid.IntRange(1, 3).Draw(t, "tick"))
	w.last[r] = at
	return at
}

// record applies a freshly built op on its replica and remembers it. A
// builder's refusal (the author may not do that now) is fine.
func (w *world) record(t *rapid.T, r int) func(Op, error) {
	return func(op Op, err error) {
		if err != nil {
			if !errors.Is(err, core.ErrUnauthorized) && !errors.Is(err, core.ErrInvalidArgument) {
				t.Fatalf("builder: %v", err)
			}
			return
		}
		if _, err := w.reps[r].Apply(op); err != nil {
			t.Fatal(err)
		}
		w.all = append(w.all, op)
	}
}

// sync copies a random prefix of q's operations to r.
func (w *world) sync(t *rapid.T, r, q int) {
	ops := w.reps[q].Ops()
	k := rapid.IntRange(0, len(ops)).Draw(t, "sync count")
	if _, err := w.reps[r].ApplyAll(ops[:k]); err != nil {
		t.Fatal(err)
	}
}

// step performs one random action on one replica.
func (w *world) step(t *rapid.T) {
	r := rapid.IntRange(0, len(w.reps)-1).Draw(t, "replica")
	s, me := w.reps[r], w.ids[r]
	target := w.ids[rapid.IntRange(0, len(w.ids)-1).Draw(t, "target")]
	switch rapid.IntRange(0, 7).Draw(t, "action") {
	case 0, 1:
		w.sync(t, r, rapid.IntRange(0, len(w.reps)-1).Draw(t, "from"))
	case 2:
		trust := rapid.SampledFrom([]TrustLevel{TrustPending, TrustTrusted, TrustTrusted, TrustOwner}).Draw(t, "trust")
		op, err := s.NewAdd(me, w.now(t, r), deviceOf(target, "dev", trust))
		w.record(t, r)(op, err)
	case 3:
		op, err := s.NewRevoke(me, w.now(t, r), target.DeviceID())
		w.record(t, r)(op, err)
	case 4:
		name := rapid.SampledFrom([]string{"phone", "tablet", "laptop"}).Draw(t, "name")
		op, err := s.NewRename(me, w.now(t, r), target.DeviceID(), name)
		w.record(t, r)(op, err)
	case 5:
		pol := rapid.SampledFrom([]string{`{}`, `{"m":"full"}`, `{"m":"summary"}`}).Draw(t, "policy")
		op, err := s.NewSetPolicy(me, w.now(t, r), target.DeviceID(), []byte(pol))
		w.record(t, r)(op, err)
	case 6:
		seed := rapid.Uint64().Draw(t, "secret seed")
		op, err := s.NewRotation(me, w.now(t, r), rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
		w.record(t, r)(op, err)
	case 7:
		// A signed operation by any device, permitted or not, skipping
		// the builder's checks: replicas must agree on ignoring it too.
		author := w.ids[rapid.IntRange(0, len(w.ids)-1).Draw(t, "rogue author")]
		op := Op{Kind: OpAdd, At: w.now(t, r), Target: target.DeviceID(), TargetKey: target.PublicKey(), Trust: TrustOwner, Name: "rogue"}
		if rapid.Bool().Draw(t, "rogue revoke") {
			op = Op{Kind: OpRevoke, At: op.At, Target: target.DeviceID()}
		}
		op.sign(author)
		w.record(t, r)(op, nil)
	}
}

func identities(t testing.TB, n int) []*identity.Identity {
	ids := make([]*identity.Identity, n)
	for i := range ids {
		ids[i] = ident(t, uint64(i))
	}
	return ids
}

// Three replicas that apply the same set of operations, in any order, with
// duplicates and in any batching, end identical; and the authoring
// replicas agree with them once fully synced.
func TestPropertyReplicasConverge(t *testing.T) {
	ids := identities(t, 5)
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, ids, 3)
		// Let the founder bring the other authors in first, most of the time.
		for i := 1; i < 3; i++ {
			if rapid.IntRange(0, 4).Draw(t, "bootstrap") > 0 {
				w.record(t, 0)(w.reps[0].NewAdd(ids[0], w.now(t, 0), deviceOf(ids[i], "dev", TrustTrusted)))
			}
		}
		for i := 0; i < 3; i++ {
			w.sync(t, i, 0)
		}
		for n := rapid.IntRange(1, 40).Draw(t, "steps"); n > 0; n-- {
			w.step(t)
		}
		want := summarize(deliver(t, w.genesis, w.all, "replica 0"))
		for i := 1; i < 3; i++ {
			got := summarize(deliver(t, w.genesis, w.all, fmt.Sprintf("replica %d", i)))
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("replica %d differs:\n got %+v\nwant %+v", i, got, want)
			}
		}
		for i, s := range w.reps {
			if _, err := s.ApplyAll(w.all); err != nil {
				t.Fatal(err)
			}
			if got := summarize(s); !reflect.DeepEqual(got, want) {
				t.Fatalf("authoring replica %d differs after full sync:\n got %+v\nwant %+v", i, got, want)
			}
		}
		// Revoked is terminal: any device targeted by an effective
		// revocation is revoked, whatever adds came concurrently or later.
		final := deliver(t, w.genesis, w.all, "check")
		for _, op := range w.all {
			if op.Kind == OpRevoke && final.Effective(op.Hash()) {
				if d, _ := final.Device(op.Target); d.Trust != TrustRevoked {
					t.Fatalf("%s revoked by an effective op but is %s", op.Target.Short(), d.Trust)
				}
			}
		}
	})
}

// An add (or approval) of X and a concurrent revocation of X, by devices
// that stay trusted, end with X revoked on every replica, whatever the
// timestamps, the other concurrent changes to X and the delivery order.
func TestPropertyRevokeWinsOverConcurrentAdd(t *testing.T) {
	ids := identities(t, 4) // founder, adder, revoker, x
	rapid.Check(t, func(t *rapid.T) {
		w := newWorld(t, ids, 3)
		x := ids[3]
		for i := 1; i < 3; i++ {
			w.record(t, 0)(w.reps[0].NewAdd(ids[0], w.now(t, 0), deviceOf(ids[i], "dev", TrustTrusted)))
		}
		if rapid.Bool().Draw(t, "x pending first") {
			w.record(t, 0)(w.reps[0].NewAdd(ids[0], w.now(t, 0), deviceOf(x, "x", TrustPending)))
		}
		for i := 1; i < 3; i++ {
			w.sync(t, i, 0)
			if _, err := w.reps[i].ApplyAll(w.reps[0].Ops()); err != nil {
				t.Fatal(err)
			}
		}
		// Concurrently: replica 1 adds x, replica 2 revokes it, replica 0
		// renames, re-adds or re-polices x; no sync in between.
		trust := rapid.SampledFrom([]TrustLevel{TrustPending, TrustTrusted, TrustOwner}).Draw(t, "granted")
		adder := 1
		if trust == TrustOwner {
			adder = 0 // only an owner grants owner
		}
		w.record(t, adder)(w.reps[adder].NewAdd(ids[adder], w.now(t, adder), deviceOf(x, "x", trust)))
		w.record(t, 2)(w.reps[2].NewRevoke(ids[2], w.now(t, 2), x.DeviceID()))
		for n := rapid.IntRange(0, 4).Draw(t, "noise"); n > 0; n-- {
			at := w.now(t, 0)
			switch rapid.IntRange(0, 2).Draw(t, "noise kind") {
			case 0:
				w.record(t, 0)(w.reps[0].NewAdd(ids[0], at, deviceOf(x, "x again", TrustTrusted)))
			case 1:
				w.record(t, 0)(w.reps[0].NewRename(ids[0], at, x.DeviceID(), "renamed"))
			case 2:
				w.record(t, 0)(w.reps[0].NewSetPolicy(ids[0], at, x.DeviceID(), []byte("{}")))
			}
		}
		var first summary
		for i := 0; i < 3; i++ {
			s := deliver(t, w.genesis, w.all, fmt.Sprintf("replica %d", i))
			if d, _ := s.Device(x.DeviceID()); d.Trust != TrustRevoked {
				t.Fatalf("replica %d: x is %s after a concurrent add and revoke", i, d.Trust)
			}
			// And once revoked, nobody can add it back.
			if _, err := s.NewAdd(ids[0], s.Latest()+1, deviceOf(x, "x", TrustTrusted)); !errors.Is(err, ErrRevoked) {
				t.Fatalf("replica %d: re-adding x after revocation: %v", i, err)
			}
			if i == 0 {
				first = summarize(s)
			} else if got := summarize(s); !reflect.DeepEqual(got, first) {
				t.Fatalf("replica %d differs", i)
			}
		}
	})
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
