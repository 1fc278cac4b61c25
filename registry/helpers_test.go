package registry

import (
	"math/rand/v2"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// ident returns a deterministic identity for test device n.
func ident(t testing.TB, n uint64) *identity.Identity {
	t.Helper()
	var seed [32]byte
	seed[0] = byte(n)
	id, err := identity.Generate(rand.NewChaCha8(seed))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ts(ms int64) core.Timestamp { return core.MakeTimestamp(1_800_000_000_000+ms, 0) }

// mesh is a founded registry plus helpers to act as its devices.
type mesh struct {
	t     testing.TB
	owner *identity.Identity
	s     *State
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	owner := ident(t, 0)
	g, err := Genesis(owner, ts(0), "laptop", TypeLaptop, []byte(`{"mode":"full"}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewState(g)
	if err != nil {
		t.Fatal(err)
	}
	return &mesh{t: t, owner: owner, s: s}
}

// must returns a function that applies a built operation to s, failing
// the test on error: must(t, s)(s.NewAdd(...)).
func must(t testing.TB, s *State) func(Op, error) Op {
	return func(op Op, err error) Op {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(op); err != nil {
			t.Fatal(err)
		}
		return op
	}
}

func deviceOf(id *identity.Identity, name string, trust TrustLevel) Device {
	return Device{PublicKey: id.PublicKey(), Name: name, Type: TypePhone, Trust: trust}
}

// clone returns an independent replica holding the same operations.
func clone(t testing.TB, s *State) *State {
	t.Helper()
	ops := s.Ops()
	for _, g := range ops {
		if g.Hash() != s.MeshID() {
			continue
		}
		c, err := NewState(g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ApplyAll(ops); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Fatal("no genesis among the operations")
	return nil
}
