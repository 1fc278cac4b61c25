package conflict

import (
	"bytes"
	"errors"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/internal/allocbound"
)

func FuzzDecodeEmbedding(f *testing.F) {
	f.Add(mustEncode(Embedding{Vector: []float32{1, -2}, ContentHash: hash("x"), Model: "m", Meta: []byte("{}"), Time: 3, Device: dev(1), Stale: true}))
	f.Add(mustEncode(Embedding{}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var e Embedding
		var err error
		// The vector is copied once, the rest aliased or small.
		allocbound.Check(t, in, 4, allocbound.Slack, func() { e, err = DecodeEmbedding(in) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		out, err := e.Encode()
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("accepted non-canonical input (err %v)", err)
		}
	})
}

func FuzzProfile(f *testing.F) {
	sample, _ := ProfileSet(nil, "name", "Ada", 5, dev(1))
	sample, _ = ProfileDelete(sample, "age", 6, dev(2))
	f.Add(sample)
	f.Add([]byte(`{"name":{"v":{"first":"A"},"t":"9","d":"` + hexDev(3) + `"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ab, errA := ProfileMerge(in, sample)
		ba, errB := ProfileMerge(sample, in)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("errors differ by order: %v / %v", errA, errB)
		}
		if errA != nil {
			if !errors.Is(errA, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", errA)
			}
			return
		}
		if !bytes.Equal(ab, ba) {
			t.Fatalf("not symmetric:\n%s\n%s", ab, ba)
		}
		again, err := ProfileMerge(ab, ab)
		if err != nil || !bytes.Equal(again, ab) {
			t.Fatalf("merge output not a fixed point (err %v):\n%s\n%s", err, ab, again)
		}
		if _, err := ProfileFields(ab); err != nil {
			t.Fatalf("merge output unreadable: %v", err)
		}
	})
}

// FuzzResolve feeds arbitrary values to every strategy: no panic, errors
// only of the documented kinds, and the same outcome with sides swapped.
func FuzzResolve(f *testing.F) {
	var l crdt.Log
	_ = l.Append(crdt.Message{ID: "m", Time: 1, Device: dev(1), Body: []byte("hi")})
	a := crdt.NewAverage(2)
	_ = a.Add(dev(1), []float64{1, 2}, 1)
	ev, _ := EventsAppend(nil, []byte("open"))
	prof, _ := ProfileSet(nil, "name", "Ada", 5, dev(1))
	emb := mustEncode(Embedding{Vector: []float32{1, 0}, ContentHash: hash("x")})
	for _, v := range [][]byte{l.Encode(), a.Encode(), ev, prof, emb, nil} {
		f.Add(v, v, uint64(1), uint64(2), false)
	}
	f.Add(l.Encode(), []byte{7, 1}, uint64(3), uint64(3), true)
	all := []core.Resolver{LWW{}, Manual{}, FieldMerge{}, Chronological{}, WeightedAverage{}, VectorMerge{}, Union{}}
	f.Fuzz(func(t *testing.T, va, vb []byte, ta, tb uint64, deleted bool) {
		x := rec(va, core.Timestamp(ta), 1)
		y := rec(vb, core.Timestamp(tb), 2)
		y.Deleted = deleted
		for _, r := range all {
			r1, e1 := r.Resolve(ctx, core.Conflict{Local: x, Remote: y})
			r2, e2 := r.Resolve(ctx, core.Conflict{Local: y, Remote: x})
			if (e1 == nil) != (e2 == nil) {
				t.Fatalf("%T: errors differ by order: %v / %v", r, e1, e2)
			}
			if e1 != nil {
				if !errors.Is(e1, ErrMalformed) && !errors.Is(e1, ErrIncompatible) {
					t.Fatalf("%T: unexpected error kind %v", r, e1)
				}
				continue
			}
			if !sameResolution(r1, r2) {
				t.Fatalf("%T: not symmetric", r)
			}
		}
	})
}
