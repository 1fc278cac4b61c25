package registry

import (
	"fmt"
	"testing"
)

// benchOps returns a registry history of n operations: 8 devices added by
// the founder, then renames and policy changes by them, and two
// revocations.
func benchOps(b *testing.B, n int) (Op, []Op) {
	m := newMesh(b)
	ids := identities(b, 9)[1:]
	at := int64(1)
	next := func() int64 { at++; return at }
	for _, id := range ids {
		must(b, m.s)(m.s.NewAdd(m.owner, ts(next()), deviceOf(id, "dev", TrustTrusted)))
	}
	for i := 0; m.s.Len() < n-2; i++ {
		author, target := ids[i%6], ids[(i+1)%6] // ids[6], ids[7] get revoked
		if i%2 == 0 {
			must(b, m.s)(m.s.NewRename(author, ts(next()), target.DeviceID(), fmt.Sprintf("name %d", i)))
		} else {
			must(b, m.s)(m.s.NewSetPolicy(author, ts(next()), target.DeviceID(), []byte(`{"m":"full"}`)))
		}
	}
	must(b, m.s)(m.s.NewRevoke(ids[0], ts(next()), ids[6].DeviceID()))
	must(b, m.s)(m.s.NewRevoke(ids[1], ts(next()), ids[7].DeviceID()))
	var genesis Op
	for _, op := range m.s.Ops() {
		if op.Hash() == m.s.MeshID() {
			genesis = op
		}
	}
	return genesis, m.s.Ops()
}

// BenchmarkApplyAll measures rebuilding a registry from its operations in
// one batch (a restart, or a new device's first sync).
func BenchmarkApplyAll(b *testing.B) {
	for _, n := range []int{100, 1000} {
		g, ops := benchOps(b, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				s, _ := NewState(g)
				if _, err := s.ApplyAll(ops); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyOne measures applying one new operation to a registry that
// already holds n (the steady state: each op replays the set).
func BenchmarkApplyOne(b *testing.B) {
	for _, n := range []int{100, 1000} {
		g, ops := benchOps(b, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, _ := NewState(g)
			if _, err := s.ApplyAll(ops[:len(ops)-1]); err != nil {
				b.Fatal(err)
			}
			last := ops[len(ops)-1]
			for b.Loop() {
				delete(s.ops, last.Hash())
				if _, err := s.Apply(last); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
