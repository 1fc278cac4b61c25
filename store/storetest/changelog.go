package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/devicemesh/federation/core"
)

func testReplay(t *testing.T, st core.Store) {
	w := newWriter(1)
	b1 := w.commit(t, st, put("c", "a", "1"), put("c", "b", "2"), put("c", "c", "3"))
	before := stats(t, st)
	if err := st.Commit(context.Background(), b1); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if after := stats(t, st); after != before {
		t.Fatalf("replay changed stats: %+v -> %+v", before, after)
	}
	if got := seqs(changes(t, st, w.origin, 0, 0)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("changelog after replay = %v", got)
	}
	// A late replay must not roll back what was written since.
	newer := w.commit(t, st, put("c", "a", "newer"))
	if err := st.Commit(context.Background(), b1); err != nil {
		t.Fatalf("late replay: %v", err)
	}
	requireRecord(t, mustGet(t, st, "c", "a"), newer.Records[0])
	// A batch overlapping what is logged appends only the new part.
	b2 := w.batch(put("c", "d", "4"), put("c", "e", "5"))
	overlap := core.Batch{
		Changes: append(slices.Clone(newer.Changes), b2.Changes...),
		Records: append(slices.Clone(newer.Records), b2.Records...),
	}
	if err := st.Commit(context.Background(), overlap); err != nil {
		t.Fatalf("overlapping batch: %v", err)
	}
	if got := seqs(changes(t, st, w.origin, 0, 0)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("changelog after overlap = %v", got)
	}
	if got := versionVector(t, st)[w.origin]; got != 6 {
		t.Fatalf("version vector = %d, want 6", got)
	}
	requireRecord(t, mustGet(t, st, "c", "e"), b2.Records[1])
	if s := stats(t, st); s.Changes != 6 || s.Records != 5 {
		t.Fatalf("stats after overlap = %+v", s)
	}
}

func testGapRefused(t *testing.T, st core.Store) {
	a, b := newWriter(1), newWriter(2)
	a.commit(t, st, put("c", "a", "1"))
	before := stats(t, st)
	vvBefore := versionVector(t, st)
	good := a.batch(put("c", "new", "would be fine alone"))
	b.batch(put("c", "skipped", "x")) // b's seq 1 never arrives
	gap := b.batch(put("c", "gap", "y"))
	batch := core.Batch{
		Changes: append(slices.Clone(good.Changes), gap.Changes...),
		Records: append(slices.Clone(good.Records), gap.Records...),
	}
	err := st.Commit(context.Background(), batch)
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("commit with a gap: err = %v, want ErrInvalidArgument", err)
	}
	// Nothing of the batch may be visible, not even its valid part.
	requireNotFound(t, st, "c", "new")
	requireNotFound(t, st, "c", "gap")
	if s := stats(t, st); s != before {
		t.Fatalf("stats changed by a refused batch: %+v -> %+v", before, s)
	}
	if v := versionVector(t, st); v.Compare(vvBefore) != core.Equal {
		t.Fatalf("version vector changed by a refused batch: %v -> %v", vvBefore, v)
	}
	if cs := changes(t, st, a.origin, 0, 0); len(cs) != 1 {
		t.Fatalf("changelog of a holds %d entries, want 1", len(cs))
	}
	if cs := changes(t, st, b.origin, 0, 0); len(cs) != 0 {
		t.Fatalf("changelog of b holds %d entries, want 0", len(cs))
	}
	// The valid part commits on its own afterwards.
	if err := st.Commit(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "new"), good.Records[0])
	// A gap inside one origin's run is refused too.
	later := a.batch(put("c", "x", "1"), put("c", "y", "2"))
	later.Changes = later.Changes[1:]
	if err := st.Commit(context.Background(), later); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("commit starting past the next sequence: err = %v", err)
	}
}

func testInvalidBatch(t *testing.T, st core.Store) {
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"))
	before := stats(t, st)
	bad := []struct {
		name string
		mod  func(b *core.Batch)
	}{
		{"empty collection", func(b *core.Batch) { b.Records[1].Collection = "" }},
		{"long collection", func(b *core.Batch) { b.Records[1].Collection = strings.Repeat("c", core.MaxCollectionLen+1) }},
		{"long key", func(b *core.Batch) { b.Records[1].Key = strings.Repeat("k", core.MaxKeyLen+1) }},
		{"large value", func(b *core.Batch) { b.Records[1].Value = make([]byte, core.MaxValueLen+1) }},
		{"zero origin", func(b *core.Batch) { b.Changes[1].Origin = core.DeviceID{} }},
		{"zero sequence", func(b *core.Batch) { b.Changes[1].Seq = 0 }},
	}
	for _, tc := range bad {
		probe := *w // do not advance the real writer
		probe.seen = w.seen.Clone()
		b := probe.batch(put("c", "x", "1"), put("c", "y", "2"))
		tc.mod(&b)
		if err := st.Commit(context.Background(), b); !errors.Is(err, core.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", tc.name, err)
		}
		requireNotFound(t, st, "c", "x")
		if s := stats(t, st); s != before {
			t.Errorf("%s: refused batch changed stats %+v -> %+v", tc.name, before, s)
		}
	}
	// Keys and values at the limits are fine.
	w.commit(t, st, put(strings.Repeat("c", core.MaxCollectionLen), strings.Repeat("k", core.MaxKeyLen), "ok"))
}

func testChangesOrderLimit(t *testing.T, st core.Store) {
	a, b := newWriter(1), newWriter(2)
	var want []core.Change
	for i := 0; i < 10; i++ {
		ba := a.commit(t, st, put("c", fmt.Sprintf("a%d", i), fmt.Sprint(i)), put("d", fmt.Sprintf("a%d", i), "x"))
		want = append(want, ba.Changes...)
		b.commit(t, st, put("c", fmt.Sprintf("b%d", i), fmt.Sprint(i)))
	}
	got := changes(t, st, a.origin, 0, 0)
	if len(got) != len(want) {
		t.Fatalf("%d changes of a, want %d", len(got), len(want))
	}
	for i := range want {
		requireRecord(t, got[i].Record, want[i].Record)
		if got[i].TxnFirst != want[i].TxnFirst || got[i].TxnLen != want[i].TxnLen {
			t.Fatalf("change %d: transaction %d+%d, want %d+%d", i, got[i].TxnFirst, got[i].TxnLen, want[i].TxnFirst, want[i].TxnLen)
		}
	}
	cases := []struct {
		after uint64
		limit int
		want  []uint64
	}{
		{0, 3, []uint64{1, 2, 3}},
		{5, 4, []uint64{6, 7, 8, 9}},
		{17, 0, []uint64{18, 19, 20}},
		{18, 10, []uint64{19, 20}},
		{20, 0, []uint64{}},
		{1000, 1, []uint64{}},
	}
	for _, c := range cases {
		if got := seqs(changes(t, st, a.origin, c.after, c.limit)); !slices.Equal(got, c.want) {
			t.Errorf("changes(after %d, limit %d) = %v, want %v", c.after, c.limit, got, c.want)
		}
	}
	if n := len(changes(t, st, device(77), 0, 0)); n != 0 {
		t.Errorf("unknown origin has %d changes", n)
	}
	stop := errors.New("stop")
	calls := 0
	err := st.Changes(context.Background(), b.origin, 0, 0, func(core.Change) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("changes returned %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func testChangesOverwritten(t *testing.T, st core.Store) {
	w := newWriter(1)
	var want []string
	for i := 0; i < 5; i++ {
		v := fmt.Sprintf("version-%d", i)
		want = append(want, v)
		w.commit(t, st, put("c", "k", v))
	}
	w.commit(t, st, del("c", "k"))
	got := changes(t, st, w.origin, 0, 0)
	if len(got) != 6 {
		t.Fatalf("%d changes, want 6", len(got))
	}
	for i, v := range want {
		if string(got[i].Value) != v || got[i].Deleted {
			t.Fatalf("change %d = %q (deleted %v), want %q", i+1, got[i].Value, got[i].Deleted, v)
		}
	}
	if !got[5].Deleted {
		t.Fatal("last change is not the delete")
	}
}

func testVersionVector(t *testing.T, st core.Store) {
	if v := versionVector(t, st); len(v.Devices()) != 0 {
		t.Fatalf("empty store has version vector %v", v)
	}
	a, b, c := newWriter(1), newWriter(2), newWriter(3)
	a.commit(t, st, put("c", "1", "x"), put("c", "2", "x"))
	b.commit(t, st, put("c", "3", "x"))
	a.commit(t, st, put("c", "4", "x"))
	want := core.VersionVector{a.origin: 3, b.origin: 1}
	v := versionVector(t, st)
	if v.Compare(want) != core.Equal {
		t.Fatalf("version vector %v, want %v", v, want)
	}
	v[c.origin] = 100 // the result is the caller's copy
	if versionVector(t, st).Compare(want) != core.Equal {
		t.Fatal("modifying a returned version vector changed the store's")
	}
	// A context naming many devices round-trips.
	wide := c.batch(put("c", "wide", "x"))
	for i := byte(10); i < 40; i++ {
		wide.Records[0].Context[device(i)] = uint64(i) * 1000
		wide.Changes[0].Context[device(i)] = uint64(i) * 1000
	}
	if err := st.Commit(context.Background(), wide); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "wide"), wide.Records[0])
	requireRecord(t, changes(t, st, c.origin, 0, 0)[0].Record, wide.Changes[0].Record)
}
