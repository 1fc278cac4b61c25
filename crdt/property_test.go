package crdt

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/devicemesh/federation/core"
)

func dev(i int) core.DeviceID {
	var d core.DeviceID
	d[0] = byte(i)
	d[31] = byte(i * 7)
	return d
}

// model describes one CRDT type to the generic property tests.
type model[T any] struct {
	empty  func() T
	op     func(t *rapid.T, s T, replica int) // one random local update by replica's device
	merge  func(a, b T) error                 // a.Merge(b)
	clone  func(T) T
	encode func(T) []byte
	decode func([]byte) (T, error)
}

// reachable runs three replicas through a random interleaving of local
// updates and pairwise merges and returns every state they passed through:
// states a real mesh can produce.
func reachable[T any](t *rapid.T, m model[T]) []T {
	reps := []T{m.empty(), m.empty(), m.empty()}
	pool := []T{m.empty()}
	steps := rapid.IntRange(1, 25).Draw(t, "steps")
	for s := 0; s < steps; s++ {
		i := rapid.IntRange(0, 2).Draw(t, "replica")
		if rapid.IntRange(0, 2).Draw(t, "kind") > 0 {
			m.op(t, reps[i], i)
		} else {
			j := rapid.IntRange(0, 2).Draw(t, "from")
			if err := m.merge(reps[i], m.clone(reps[j])); err != nil {
				t.Fatalf("merge: %v", err)
			}
		}
		pool = append(pool, m.clone(reps[i]))
	}
	return pool
}

func merged[T any](t *rapid.T, m model[T], a, b T) T {
	out := m.clone(a)
	if err := m.merge(out, b); err != nil {
		t.Fatalf("merge: %v", err)
	}
	return out
}

func checkLaws[T any](t *testing.T, m model[T]) {
	rapid.Check(t, func(t *rapid.T) {
		pool := reachable(t, m)
		pick := rapid.SampledFrom(pool)
		a, b, c := pick.Draw(t, "a"), pick.Draw(t, "b"), pick.Draw(t, "c")
		enc := m.encode
		if ab, ba := enc(merged(t, m, a, b)), enc(merged(t, m, b, a)); !bytes.Equal(ab, ba) {
			t.Fatalf("not commutative:\n%x\n%x", ab, ba)
		}
		l := enc(merged(t, m, merged(t, m, a, b), c))
		r := enc(merged(t, m, a, merged(t, m, b, c)))
		if !bytes.Equal(l, r) {
			t.Fatalf("not associative:\n%x\n%x", l, r)
		}
		if aa := enc(merged(t, m, a, a)); !bytes.Equal(aa, enc(a)) {
			t.Fatalf("not idempotent:\n%x\n%x", aa, enc(a))
		}
		// Round trip: the decoder accepts every reachable state and
		// re-encodes it to the same bytes.
		got, err := m.decode(enc(a))
		if err != nil {
			t.Fatalf("decode own encoding: %v", err)
		}
		if !bytes.Equal(enc(got), enc(a)) {
			t.Fatalf("round trip changed encoding")
		}
	})
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// checkDelivery starts three replicas from a common reachable state and
// lets each make concurrent updates (replicas 0 and 1 one or two, replica 2
// one); each update travels as the updating replica's state after it. The
// updates are delivered to a replica in every possible order, with one
// update delivered a second time at the end: every order must end
// byte-identical, and equal to the state of a replica that merged the three
// updating replicas directly.
func checkDelivery[T any](t *testing.T, m model[T]) {
	rapid.Check(t, func(t *rapid.T) {
		pool := reachable(t, m)
		base := rapid.SampledFrom(pool).Draw(t, "base")
		var updates []T
		finals := make([]T, 3)
		for r := 0; r < 3; r++ {
			s := m.clone(base)
			n := 1
			if r < 2 {
				n = rapid.IntRange(1, 2).Draw(t, fmt.Sprint("ops", r))
			}
			for k := 0; k < n; k++ {
				m.op(t, s, r)
				updates = append(updates, m.clone(s))
			}
			finals[r] = s
		}
		want := m.encode(merged(t, m, merged(t, m, finals[0], finals[1]), finals[2]))
		dup := rapid.IntRange(0, len(updates)-1).Draw(t, "dup")
		for _, p := range permutations(len(updates)) {
			s := m.clone(base)
			for _, i := range p {
				s = merged(t, m, s, updates[i])
			}
			s = merged(t, m, s, updates[dup])
			if got := m.encode(s); !bytes.Equal(got, want) {
				t.Fatalf("delivery order %v diverged:\n%x\n%x", p, got, want)
			}
		}
	})
}

func lwwModel() model[*LWW] {
	return model[*LWW]{
		empty: func() *LWW { return &LWW{} },
		op: func(t *rapid.T, s *LWW, r int) {
			ts := core.Timestamp(rapid.Uint64Range(1, 6).Draw(t, "ts"))
			s.Set(rapid.SliceOfN(rapid.Byte(), 0, 3).Draw(t, "v"), ts, dev(r))
		},
		merge:  func(a, b *LWW) error { a.Merge(b); return nil },
		clone:  (*LWW).Clone,
		encode: (*LWW).Encode,
		decode: DecodeLWW,
	}
}

func elem(t *rapid.T) []byte { return []byte{rapid.ByteRange('a', 'd').Draw(t, "elem")} }

func orsetModel() model[*ORSet] {
	return model[*ORSet]{
		empty: NewORSet,
		op: func(t *rapid.T, s *ORSet, r int) {
			if rapid.Bool().Draw(t, "add") {
				s.Add(dev(r), elem(t))
			} else {
				s.Remove(elem(t))
			}
		},
		merge:  func(a, b *ORSet) error { a.Merge(b); return nil },
		clone:  (*ORSet).Clone,
		encode: (*ORSet).Encode,
		decode: DecodeORSet,
	}
}

func mvModel() model[*MVRegister] {
	return model[*MVRegister]{
		empty:  NewMVRegister,
		op:     func(t *rapid.T, s *MVRegister, r int) { s.Set(dev(r), elem(t)) },
		merge:  func(a, b *MVRegister) error { a.Merge(b); return nil },
		clone:  (*MVRegister).Clone,
		encode: (*MVRegister).Encode,
		decode: DecodeMVRegister,
	}
}

func gsetModel() model[*GSet] {
	return model[*GSet]{
		empty:  func() *GSet { return &GSet{} },
		op:     func(t *rapid.T, s *GSet, _ int) { s.Add(rapid.SliceOfN(rapid.ByteRange(0, 5), 0, 2).Draw(t, "e")) },
		merge:  func(a, b *GSet) error { a.Merge(b); return nil },
		clone:  (*GSet).Clone,
		encode: (*GSet).Encode,
		decode: DecodeGSet,
	}
}

func gcounterModel() model[*GCounter] {
	return model[*GCounter]{
		empty: NewGCounter,
		op: func(t *rapid.T, s *GCounter, r int) {
			if err := s.Inc(dev(r), rapid.Uint64Range(0, 1000).Draw(t, "n")); err != nil {
				t.Fatal(err)
			}
		},
		merge:  func(a, b *GCounter) error { a.Merge(b); return nil },
		clone:  (*GCounter).Clone,
		encode: (*GCounter).Encode,
		decode: DecodeGCounter,
	}
}

func pncounterModel() model[*PNCounter] {
	return model[*PNCounter]{
		empty: NewPNCounter,
		op: func(t *rapid.T, s *PNCounter, r int) {
			n := rapid.Uint64Range(0, 1000).Draw(t, "n")
			var err error
			if rapid.Bool().Draw(t, "inc") {
				err = s.Inc(dev(r), n)
			} else {
				err = s.Dec(dev(r), n)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		merge:  func(a, b *PNCounter) error { a.Merge(b); return nil },
		clone:  (*PNCounter).Clone,
		encode: (*PNCounter).Encode,
		decode: DecodePNCounter,
	}
}

func averageModel() model[*Average] {
	return model[*Average]{
		empty: func() *Average { return NewAverage(3) },
		op: func(t *rapid.T, s *Average, r int) {
			v := rapid.SliceOfN(rapid.Float64Range(-1, 1), 3, 3).Draw(t, "v")
			w := rapid.Float64Range(0.01, 10).Draw(t, "w")
			var err error
			if rapid.IntRange(0, 3).Draw(t, "set") == 0 {
				err = s.Set(dev(r), v, w)
			} else {
				err = s.Add(dev(r), v, w)
			}
			if err != nil {
				t.Fatal(err)
			}
		},
		merge:  func(a, b *Average) error { return a.Merge(b) },
		clone:  (*Average).Clone,
		encode: (*Average).Encode,
		decode: DecodeAverage,
	}
}

func logModel() model[*Log] {
	next := map[int]int{}
	return model[*Log]{
		empty: func() *Log { return &Log{} },
		op: func(t *rapid.T, s *Log, r int) {
			ts := core.Timestamp(rapid.Uint64Range(1, 8).Draw(t, "ts"))
			if s.Len() > 0 && rapid.IntRange(0, 2).Draw(t, "edit") == 0 {
				id := s.msgs[rapid.IntRange(0, s.Len()-1).Draw(t, "which")].ID
				var err error
				if rapid.Bool().Draw(t, "del") {
					err = s.Delete(id, ts, dev(r))
				} else {
					err = s.Edit(id, elem(t), ts, dev(r))
				}
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			next[r]++
			m := Message{ID: fmt.Sprintf("m%d-%d", r, next[r]), Time: ts, Device: dev(r), Body: elem(t)}
			if err := s.Append(m); err != nil {
				t.Fatal(err)
			}
		},
		merge:  func(a, b *Log) error { a.Merge(b); return nil },
		clone:  (*Log).Clone,
		encode: (*Log).Encode,
		decode: DecodeLog,
	}
}

func TestMergeLaws(t *testing.T) {
	t.Run("LWW", func(t *testing.T) { checkLaws(t, lwwModel()) })
	t.Run("ORSet", func(t *testing.T) { checkLaws(t, orsetModel()) })
	t.Run("MVRegister", func(t *testing.T) { checkLaws(t, mvModel()) })
	t.Run("GSet", func(t *testing.T) { checkLaws(t, gsetModel()) })
	t.Run("GCounter", func(t *testing.T) { checkLaws(t, gcounterModel()) })
	t.Run("PNCounter", func(t *testing.T) { checkLaws(t, pncounterModel()) })
	t.Run("Average", func(t *testing.T) { checkLaws(t, averageModel()) })
	t.Run("Log", func(t *testing.T) { checkLaws(t, logModel()) })
}

func TestDeliveryOrder(t *testing.T) {
	t.Run("LWW", func(t *testing.T) { checkDelivery(t, lwwModel()) })
	t.Run("ORSet", func(t *testing.T) { checkDelivery(t, orsetModel()) })
	t.Run("MVRegister", func(t *testing.T) { checkDelivery(t, mvModel()) })
	t.Run("GSet", func(t *testing.T) { checkDelivery(t, gsetModel()) })
	t.Run("GCounter", func(t *testing.T) { checkDelivery(t, gcounterModel()) })
	t.Run("PNCounter", func(t *testing.T) { checkDelivery(t, pncounterModel()) })
	t.Run("Average", func(t *testing.T) { checkDelivery(t, averageModel()) })
	t.Run("Log", func(t *testing.T) { checkDelivery(t, logModel()) })
}
