package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/devicemesh/federation/core"
)

// Batch.Advance raises the version vector past changes the store never
// logged. The log keeps the changes it holds and has nothing for the
// skipped sequence numbers: the tests below check that a reader resuming
// anywhere sees exactly what is held, so a jump in Seq shows it where the
// log cannot serve a contiguous run, and that advancing loses no value and
// leaves Commit, Truncate and Stats exact.

// requireLog checks that the log of origin holds exactly the sequence
// numbers held (ascending) and that Changes serves it honestly from every
// point a reader may resume at, with and without a limit: never a change
// it does not hold, never one out of order.
func requireLog(t testing.TB, st core.Store, origin core.DeviceID, held ...uint64) {
	t.Helper()
	vv := versionVector(t, st)[origin]
	points := []uint64{0, vv, vv + 1}
	for _, s := range held {
		points = append(points, s-1, s, s+1)
	}
	for _, after := range points {
		var want []uint64
		for _, s := range held {
			if s > after {
				want = append(want, s)
			}
		}
		for _, limit := range []int{0, 1, 2} {
			w := want
			if limit > 0 && len(w) > limit {
				w = w[:limit]
			}
			if got := seqs(changes(t, st, origin, after, limit)); !slices.Equal(got, w) {
				t.Fatalf("changes of %s after %d (limit %d) = %v, want %v", origin.Short(), after, limit, got, w)
			}
		}
	}
}

// deltaRun returns what a delta sender can serve a peer that holds origin's
// changes up to have: the run of changes that follows have without a break,
// and whether the log broke before reaching upTo (the sender must then fall
// back to a Merkle repair).
func deltaRun(t testing.TB, st core.Store, origin core.DeviceID, have, upTo uint64) (run []uint64, gap bool) {
	t.Helper()
	errGap := errors.New("gap")
	next := have + 1
	err := st.Changes(context.Background(), origin, have, 0, func(c core.Change) error {
		if c.Seq > upTo {
			return errGap // not needed: stop without a gap
		}
		if c.Seq != next {
			return errGap
		}
		run = append(run, c.Seq)
		next++
		return nil
	})
	if err != nil && !errors.Is(err, errGap) {
		t.Fatalf("changes: %v", err)
	}
	return run, next <= upTo
}

// testAdvanceGap advances an origin past a hole in the middle of its
// history and reads it as a delta sender does, from every point.
func testAdvanceGap(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	w.commit(t, st, put("c", "k1", "1"), put("c", "k2", "2"))
	w.commit(t, st, put("c", "k3", "3"))
	for range 4 {
		w.batch(put("c", "skipped", "never logged here")) // seqs 4..7
	}
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{w.origin: 7}}); err != nil {
		t.Fatalf("advance: %v", err)
	}
	requireLog(t, st, w.origin, 1, 2, 3)
	after := w.commit(t, st, put("c", "k8", "8"), put("c", "k9", "9"))
	requireLog(t, st, w.origin, 1, 2, 3, 8, 9)
	requireNotFound(t, st, "c", "skipped")
	for have := uint64(0); have <= 9; have++ {
		run, gap := deltaRun(t, st, w.origin, have, 9)
		var want []uint64
		switch {
		case have < 3:
			for s := have + 1; s <= 3; s++ {
				want = append(want, s)
			}
		case have >= 7:
			for s := have + 1; s <= 9; s++ {
				want = append(want, s)
			}
		}
		if wantGap := have < 7; gap != wantGap || !slices.Equal(run, want) {
			t.Errorf("peer at %d: served %v, gap %v; want %v, gap %v", have, run, gap, want, wantGap)
		}
	}
	// A second hole after the first.
	for range 3 {
		w.batch(put("c", "skipped", "x")) // seqs 10..12
	}
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{w.origin: 12}}); err != nil {
		t.Fatalf("second advance: %v", err)
	}
	w.commit(t, st, put("c", "k13", "13"))
	requireLog(t, st, w.origin, 1, 2, 3, 8, 9, 13)
	if run, gap := deltaRun(t, st, w.origin, 7, 13); !slices.Equal(run, []uint64{8, 9}) || !gap {
		t.Errorf("peer at 7: served %v, gap %v; want [8 9] and a gap", run, gap)
	}
	if s := stats(t, st); s.Changes != 6 {
		t.Errorf("stats.Changes = %d, want the 6 changes held", s.Changes)
	}
	requireRecord(t, mustGet(t, st, "c", "k8"), after.Records[0])
}

// testCommitAfterAdvance checks that an advance of an origin the store
// never heard of, or one in the same batch as its changes, leaves Commit
// expecting exactly the next sequence number.
func testCommitAfterAdvance(t *testing.T, st core.Store) {
	ctx := context.Background()
	fresh, mixed := newWriter(1), newWriter(2)
	for range 100 {
		fresh.batch(put("c", "skipped", "x"))
	}
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{fresh.origin: 100}}); err != nil {
		t.Fatalf("advance of a new origin: %v", err)
	}
	requireLog(t, st, fresh.origin)
	if s := stats(t, st); s != (core.StoreStats{}) {
		t.Fatalf("stats after advancing a new origin = %+v, want nothing held", s)
	}
	// Past the advanced point the sequence must follow on.
	skip := *fresh
	skip.seen = fresh.seen.Clone()
	skip.batch(put("c", "x", "x"))
	if err := st.Commit(ctx, skip.batch(put("c", "gap", "y"))); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("commit of seq 102 after advancing to 100: err = %v, want ErrInvalidArgument", err)
	}
	b := fresh.commit(t, st, put("c", "f", "101"))
	requireLog(t, st, fresh.origin, 101)
	requireRecord(t, mustGet(t, st, "c", "f"), b.Records[0])
	if got := versionVector(t, st)[fresh.origin]; got != 101 {
		t.Fatalf("version vector after commit = %d, want 101", got)
	}
	// Changes and an advance beyond them in one batch.
	m := mixed.batch(put("c", "m1", "1"), put("c", "m2", "2"))
	m.Advance = core.VersionVector{mixed.origin: 10}
	if err := st.Commit(ctx, m); err != nil {
		t.Fatalf("changes with an advance: %v", err)
	}
	requireLog(t, st, mixed.origin, 1, 2)
	for range 8 {
		mixed.batch(put("c", "skipped", "x"))
	}
	mixed.commit(t, st, put("c", "m11", "11"))
	requireLog(t, st, mixed.origin, 1, 2, 11)
	requireRecord(t, mustGet(t, st, "c", "m2"), m.Records[1])
	// An advance the batch's own changes already reach is no advance.
	n := mixed.batch(put("c", "m12", "12"), put("c", "m13", "13"))
	n.Advance = core.VersionVector{mixed.origin: 12}
	if err := st.Commit(ctx, n); err != nil {
		t.Fatal(err)
	}
	requireLog(t, st, mixed.origin, 1, 2, 11, 12, 13)
	if s := stats(t, st); s.Changes != 6 {
		t.Fatalf("stats.Changes = %d, want 6", s.Changes)
	}
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{{}: 5}}); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("advance of the zero device: err = %v, want ErrInvalidArgument", err)
	}
}

// testTruncateAfterAdvance truncates across holes: only the changes held
// count, current versions that live in them survive, and a huge hole
// costs no more than a small one.
func testTruncateAfterAdvance(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	var want []core.Record
	var ops []op
	for i := range 20 {
		ops = append(ops, put("c", fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)))
	}
	want = append(want, w.commit(t, st, ops...).Records...)
	tomb := w.commit(t, st, del("c", "k00"))
	want[0] = tomb.Records[0]
	const hole = 1 << 36 // far more sequence numbers than any step covers
	w.seq, w.seen[w.origin] = hole, hole
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{w.origin: hole}}); err != nil {
		t.Fatal(err)
	}
	over := w.commit(t, st, put("c", "k01", "newer"), put("c", "new", "n"))
	want[1] = over.Records[0]
	want = append(want, over.Records[1])
	// Acknowledged up to a point inside the hole: the 21 changes before it.
	if n, err := st.Truncate(ctx, core.VersionVector{w.origin: 1000}); err != nil || n != 21 {
		t.Fatalf("truncate into the hole = %d, %v; want 21", n, err)
	}
	requireLog(t, st, w.origin, hole+1, hole+2)
	if s := stats(t, st); s.Changes != 2 || s.Records != 20 || s.Tombstones != 1 {
		t.Fatalf("stats after truncate = %+v", s)
	}
	for _, r := range want {
		requireRecord(t, mustGet(t, st, "c", r.Key), r)
	}
	if n, err := st.Truncate(ctx, core.VersionVector{w.origin: hole + 1}); err != nil || n != 1 {
		t.Fatalf("truncate past the hole = %d, %v; want 1", n, err)
	}
	requireLog(t, st, w.origin, hole+2)
	// And everything, with the log of a fresh origin advanced too.
	other := newWriter(2)
	other.commit(t, st, put("d", "x", "1"))
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{other.origin: hole}}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Truncate(ctx, versionVector(t, st)); err != nil || n != 2 {
		t.Fatalf("truncate everything = %d, %v; want 2", n, err)
	}
	if s := stats(t, st); s.Changes != 0 || s.Records != 21 {
		t.Fatalf("stats after truncating everything = %+v", s)
	}
	requireLog(t, st, w.origin)
	requireLog(t, st, other.origin)
	got := scanAll(t, st, "c", core.KeyRange{IncludeDeleted: true})
	slices.SortFunc(want, func(a, b core.Record) int { return cmp.Compare(a.Key, b.Key) })
	if len(got) != len(want) {
		t.Fatalf("scan found %d records, want %d", len(got), len(want))
	}
	for i := range want {
		requireRecord(t, got[i], want[i])
	}
	// The log goes on after the advanced and truncated point.
	w.commit(t, st, put("c", "last", "l"))
	requireLog(t, st, w.origin, hole+3)
	if s := stats(t, st); s.Changes != 1 {
		t.Fatalf("stats.Changes = %d, want 1", s.Changes)
	}
}

// testAdvanceReplay replays an advance and the batches around it: nothing
// may change, and a change that arrives late, inside the hole, is not
// logged and does not roll back the record.
func testAdvanceReplay(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	first := w.commit(t, st, put("c", "a", "1"))
	late := w.batch(put("c", "a", "2")) // seq 2, never delivered in time
	repaired := w.batch(put("c", "a", "3")).Records[0]
	repair := core.Batch{Records: []core.Record{repaired}, Advance: core.VersionVector{w.origin: 3}}
	if err := st.Commit(ctx, repair); err != nil {
		t.Fatal(err)
	}
	next := w.commit(t, st, put("c", "b", "4"))
	before := stats(t, st)
	for name, b := range map[string]core.Batch{
		"advance alone":         {Advance: repair.Advance},
		"first batch":           first,
		"late change":           late,
		"late change, advanced": {Changes: late.Changes, Records: late.Records, Advance: repair.Advance},
		"next batch":            next,
	} {
		if err := st.Commit(ctx, b); err != nil {
			t.Fatalf("replay of %s: %v", name, err)
		}
		if s := stats(t, st); s != before {
			t.Fatalf("replay of %s changed stats %+v -> %+v", name, before, s)
		}
		if v := versionVector(t, st)[w.origin]; v != 4 {
			t.Fatalf("replay of %s: version vector %d, want 4", name, v)
		}
		requireLog(t, st, w.origin, 1, 4)
		requireRecord(t, mustGet(t, st, "c", "a"), repaired)
		requireRecord(t, mustGet(t, st, "c", "b"), next.Records[0])
	}
}
