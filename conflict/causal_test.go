package conflict

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/devicemesh/federation/core"
)

// engineMerge is the engine's merge of a received version rem into the
// current one cur (nil: none), as federation's apply.go does it: versions
// ordered by causal context supersede each other; equal contexts with
// different records and concurrent ones are resolved, the outcome taking
// the stamps of the greater version (Compare) and the union of contexts.
func engineMerge(t *rapid.T, r core.Resolver, cur *core.Record, rem core.Record) core.Record {
	if cur == nil {
		return rem
	}
	switch rem.Context.Compare(cur.Context) {
	case core.After:
		return rem
	case core.Before:
		return *cur
	case core.Equal:
		if sameRecord(*cur, rem) {
			return *cur
		}
	}
	res, err := r.Resolve(ctx, core.Conflict{Collection: rem.Collection, Key: rem.Key, Local: *cur, Remote: rem})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	win := *cur
	if Compare(rem, *cur) > 0 {
		win = rem
	}
	out := core.Record{Collection: rem.Collection, Key: rem.Key, Value: res.Value, Deleted: res.Deleted,
		Timestamp: win.Timestamp, Origin: win.Origin, Seq: win.Seq, Context: cur.Context.Clone()}
	out.Context.Merge(rem.Context)
	if out.Deleted {
		out.Value = nil
	} else if out.Value == nil {
		out.Value = []byte{}
	}
	return out
}

func sameRecord(a, b core.Record) bool {
	return a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value) && a.Timestamp == b.Timestamp &&
		a.Origin == b.Origin && a.Seq == b.Seq && a.Context.Compare(b.Context) == core.Equal
}

// causalDevice is one simulated device: its version vector, its current
// version of the one record, and every version it holds, in the order it
// got them (what it forwards on sync).
type causalDevice struct {
	id   int
	seq  uint64
	vv   core.VersionVector
	cur  *core.Record
	log  []core.Record
	seen map[string]bool
}

func versionID(r core.Record) string { return fmt.Sprintf("%x:%d", r.Origin[:2], r.Seq) }

func (d *causalDevice) take(t *rapid.T, r core.Resolver, v core.Record) {
	if d.seen[versionID(v)] {
		return
	}
	d.seen[versionID(v)] = true
	d.log = append(d.log, v)
	d.vv.Merge(v.Context)
	out := engineMerge(t, r, d.cur, v)
	d.cur = &out
}

// write makes a local version on top of the device's current one, as the
// node's commitLocal does: the context is the device's whole version vector
// plus its own dot. A deletion of a live record of a Remover collection is
// written as the value with everything it holds removed; otherwise it is a
// tombstone. A write to a Preparer collection is prepared as the node does.
func (d *causalDevice) write(t *rapid.T, s strategy, ts core.Timestamp, del bool) core.Record {
	d.seq++
	rec := core.Record{Collection: "c", Key: "k", Timestamp: ts, Origin: dev(d.id), Seq: d.seq, Context: d.vv.Clone()}
	rec.Context[dev(d.id)] = d.seq
	var old []byte
	if d.cur != nil && !d.cur.Deleted {
		old = d.cur.Value
	}
	rm, removes := RemoverFor(s.r, "c")
	switch {
	case del && removes && d.cur != nil && !d.cur.Deleted:
		v, err := rm.Remove(old, ts, dev(d.id))
		if err != nil {
			t.Fatalf("remove: %v", err)
		}
		rec.Value = v
	case del:
		rec.Deleted = true
	default:
		rec.Value = s.op(t, old, d.id, ts)
		if pr, ok := PreparerFor(s.r, "c"); ok {
			v, err := pr.Prepare(old, rec.Value, ts, dev(d.id))
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			rec.Value = v
		}
	}
	d.vv[dev(d.id)] = d.seq
	d.seen[versionID(rec)] = true
	d.log = append(d.log, rec)
	d.cur = &rec
	return rec
}

// mergeTree merges vs by a random binary grouping: each half is merged on
// its own (a device that got those versions), then the two results.
func mergeTree(t *rapid.T, r core.Resolver, vs []core.Record, label string) core.Record {
	if len(vs) == 1 {
		return vs[0]
	}
	cut := rapid.IntRange(1, len(vs)-1).Draw(t, label)
	a := mergeTree(t, r, vs[:cut], label+"l")
	b := mergeTree(t, r, vs[cut:], label+"r")
	return engineMerge(t, r, &a, b)
}

func describe(r core.Record) string {
	return fmt.Sprintf("{deleted=%v ts=%d origin=%x seq=%d ctx=%v value=%q}", r.Deleted, r.Timestamp, r.Origin[:1], r.Seq, r.Context, r.Value)
}

// TestCausalConvergence checks the CRDT-backed strategies the way the
// engine uses them: three devices write (with deletions and re-creations
// where the collection allows them) and sync at random, so versions carry
// real causal contexts; then the set of every version written is merged
// in random orders and random groupings (merged results merged again), and
// every device hears every other. All results must be identical records:
// value, tombstone, stamps and context.
func TestCausalConvergence(t *testing.T) {
	for _, s := range strategies() {
		if !s.join {
			continue
		}
		// The personality register has no removal: its deletions stay
		// tombstones, which this property does not hold for (see the
		// package documentation); its writes alone must converge.
		deletes := s.name != "WeightedAverage"
		t.Run(s.name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) { causalRun(t, s, deletes) })
		})
	}
}

func causalRun(t *rapid.T, s strategy, deletes bool) {
	devs := make([]*causalDevice, 3)
	for i := range devs {
		devs[i] = &causalDevice{id: i, vv: core.VersionVector{}, seen: map[string]bool{}}
	}
	var all []core.Record
	ts := core.Timestamp(1)
	for n := rapid.IntRange(1, 12).Draw(t, "steps"); n > 0; n-- {
		i := rapid.IntRange(0, 2).Draw(t, "dev")
		switch op := rapid.IntRange(0, 5).Draw(t, "op"); {
		case op <= 2:
			ts++
			all = append(all, devs[i].write(t, s, ts, false))
		case op == 3 && deletes:
			ts++
			all = append(all, devs[i].write(t, s, ts, true))
		default:
			j := rapid.IntRange(0, 2).Draw(t, "from")
			for _, v := range devs[j].log {
				devs[i].take(t, s.r, v)
			}
		}
	}
	if len(all) == 0 {
		return
	}
	var want core.Record
	for k := range 3 {
		perm := rapid.Permutation(all).Draw(t, fmt.Sprint("order", k))
		var got core.Record
		if k == 0 {
			var cur *core.Record
			for _, v := range perm {
				out := engineMerge(t, s.r, cur, v)
				cur = &out
			}
			got = *cur
			want = got
		} else {
			got = mergeTree(t, s.r, perm, fmt.Sprint("tree", k))
		}
		if !sameRecord(got, want) {
			t.Fatalf("order %d gives a different record:\n%s\n%s", k, describe(got), describe(want))
		}
	}
	for _, d := range devs {
		for _, o := range devs {
			for _, v := range o.log {
				d.take(t, s.r, v)
			}
		}
		if !sameRecord(*d.cur, want) {
			t.Fatalf("device %d ends with a different record:\n%s\n%s", d.id, describe(*d.cur), describe(want))
		}
	}
}
