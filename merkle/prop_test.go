package merkle

import (
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

type treeOp struct {
	del bool
	key int
	d   uint64
}

// genOps draws a write history: a bulk load (so leaves split), random
// writes and deletes over the same keys, and a mass delete of a key range
// (so inner nodes merge).
func genOps(maxKeys int) *rapid.Generator[[]treeOp] {
	op := rapid.Custom(func(t *rapid.T) treeOp {
		return treeOp{
			del: rapid.IntRange(0, 3).Draw(t, "del") == 0,
			key: rapid.IntRange(0, maxKeys).Draw(t, "key"),
			d:   rapid.Uint64Range(0, 3).Draw(t, "digest"),
		}
	})
	return rapid.Custom(func(t *rapid.T) []treeOp {
		var ops []treeOp
		bulk := rapid.IntRange(0, maxKeys).Draw(t, "bulk")
		for i := 0; i < bulk; i++ {
			ops = append(ops, treeOp{key: i, d: uint64(i % 4)})
		}
		ops = append(ops, rapid.SliceOfN(op, 0, 200).Draw(t, "random")...)
		lo := rapid.IntRange(0, maxKeys).Draw(t, "massDeleteFrom")
		hi := rapid.IntRange(lo, maxKeys).Draw(t, "massDeleteTo")
		for i := lo; i < hi; i++ {
			ops = append(ops, treeOp{del: true, key: i})
		}
		return ops
	})
}

// replay applies ops to a new tree and to the model.
func replay(ops []treeOp) (*Tree, model) {
	tr, m := New(), model{}
	for _, o := range ops {
		if o.del {
			tr.Delete(keyOf(o.key))
			delete(m, keyOf(o.key))
		} else {
			tr.Set(keyOf(o.key), digestOf(o.d))
			m[keyOf(o.key)] = digestOf(o.d)
		}
	}
	return tr, m
}

// Any two trees holding the same (key, digest) set have equal roots and
// equal nodes, whatever the order of the writes and deletes that made them.
func TestPropOrderIndependence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxKeys := rapid.SampledFrom([]int{10, 200, 1500}).Draw(t, "maxKeys")
		ops := genOps(maxKeys).Draw(t, "ops")
		a, m := replay(ops)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		keys = rapid.Permutation(keys).Draw(t, "order")
		// b takes the final set in another order, through detours: other
		// digests first, and keys that come and go.
		b := New()
		for i, k := range keys {
			b.Set(k, digestOf(99))
			b.Set("noise"+k, digestOf(1))
			if i%2 == 0 {
				b.Set(k, m[k])
			}
		}
		for _, k := range keys {
			b.Set(k, m[k])
			b.Delete("noise" + k)
		}
		if a.Root() != b.Root() {
			t.Fatal("same set, different roots")
		}
		checkTree(t, a, m)
		checkTree(t, b, m)
	})
}

// Reconciling two random trees finds exactly their symmetric difference,
// seen from either side, under every configuration.
func TestPropReconcile(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.SampledFrom([]int{0, 5, 100, 3000}).Draw(t, "n")
		pad := strings.Repeat("p", rapid.SampledFrom([]int{0, 40, 400}).Draw(t, "pad"))
		key := func(i int) string { return keyOf(i) + pad }
		local, remote := New(), New()
		want := Diff{}
		for i := 0; i < n; i++ {
			switch rapid.IntRange(0, 19).Draw(t, "kind") {
			case 0:
				local.Set(key(i), digestOf(uint64(i)))
				want.LocalOnly = append(want.LocalOnly, key(i))
			case 1:
				remote.Set(key(i), digestOf(uint64(i)))
				want.RemoteOnly = append(want.RemoteOnly, key(i))
			case 2:
				local.Set(key(i), digestOf(uint64(i)))
				remote.Set(key(i), digestOf(uint64(i)+1))
				want.Changed = append(want.Changed, key(i))
			default:
				local.Set(key(i), digestOf(uint64(i)))
				remote.Set(key(i), digestOf(uint64(i)))
			}
		}
		// Sometimes one side holds a large block the other lacks entirely
		// (a partial replica), forcing paged listings or local-only ranges.
		if rapid.Bool().Draw(t, "block") {
			side, other := local, &want.LocalOnly
			if rapid.Bool().Draw(t, "remoteBlock") {
				side, other = remote, &want.RemoteOnly
			}
			for i := 0; i < 3000; i++ {
				k := "block-" + keyOf(i) + pad
				side.Set(k, digestOf(7))
				*other = append(*other, k)
			}
		}
		for _, s := range [][]string{want.LocalOnly, want.RemoteOnly, want.Changed} {
			slices.Sort(s)
		}
		cfg := Config{
			Salt:          rapid.Uint64().Draw(t, "salt"),
			FPLen:         rapid.IntRange(6, MaxFPLen).Draw(t, "fplen"),
			RoundBudget:   rapid.SampledFrom([]int{-1, 0, 500, 1 << 20}).Draw(t, "budget"),
			ListThreshold: rapid.IntRange(0, 40).Draw(t, "threshold"),
		}
		got, stats := exchange(t, local, remote, cfg)
		if !diffEqual(got, want) {
			t.Fatalf("diff %v, want %v", got, want)
		}
		back, _ := exchange(t, remote, local, cfg)
		if !slices.Equal(back.LocalOnly, want.RemoteOnly) || !slices.Equal(back.RemoteOnly, want.LocalOnly) ||
			!slices.Equal(back.Changed, want.Changed) {
			t.Fatal("reconciliation is not symmetric")
		}
		if want.Len() == 0 && stats.Rounds != 1 {
			t.Fatalf("equal trees took %d rounds", stats.Rounds)
		}
	})
}

func diffEqual(a, b Diff) bool {
	return slices.Equal(a.LocalOnly, b.LocalOnly) && slices.Equal(a.RemoteOnly, b.RemoteOnly) &&
		slices.Equal(a.Changed, b.Changed)
}

// A snapshot restores the same tree.
func TestPropSnapshot(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ops := genOps(rapid.SampledFrom([]int{5, 300}).Draw(t, "maxKeys")).Draw(t, "ops")
		tr, m := replay(ops)
		snap := tr.AppendSnapshot(nil)
		if len(snap) != tr.SnapshotSize() {
			t.Fatalf("SnapshotSize %d, encoded %d", tr.SnapshotSize(), len(snap))
		}
		back, err := Restore(snap)
		if err != nil {
			t.Fatal(err)
		}
		checkTree(t, back, m)
		if back.Root() != tr.Root() {
			t.Fatal("restored root differs")
		}
		// Past its arena bound Restore inserts key by key: same tree.
		limit := rapid.IntRange(0, 200).Draw(t, "arena")
		small, err := restore(snap, limit)
		if err != nil {
			t.Fatalf("restore with a %d-byte arena: %v", limit, err)
		}
		checkTree(t, small, m)
	})
}

// Reverting a run of undoable updates, newest first, gives back the tree
// they started from, node for node: new keys (splits included), changed
// digests, digests set to what they were, and keys written twice in the
// run.
func TestPropApplyUndoableReverts(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxKeys := rapid.SampledFrom([]int{10, 200, 1500}).Draw(t, "maxKeys")
		ops := genOps(maxKeys).Draw(t, "ops")
		tr, m := replay(ops)
		before := tr.Root()
		run := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) treeOp {
			return treeOp{key: rapid.IntRange(0, 2*maxKeys).Draw(t, "key"), d: rapid.Uint64Range(0, 4).Draw(t, "digest")}
		}), 0, 400).Draw(t, "run")
		undos := make([]Undo, 0, len(run))
		after := model{}
		for k, d := range m {
			after[k] = d
		}
		for _, o := range run {
			undos = append(undos, tr.ApplyUndoable(Prepare(keyOf(o.key), digestOf(o.d))))
			after[keyOf(o.key)] = digestOf(o.d)
		}
		checkTree(t, tr, after)
		for i := len(undos) - 1; i >= 0; i-- {
			tr.Revert(undos[i])
		}
		if tr.Root() != before {
			t.Fatal("root differs after reverting")
		}
		checkTree(t, tr, m)
	})
}
