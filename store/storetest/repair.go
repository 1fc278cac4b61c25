package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/devicemesh/federation/core"
)

func testCollections(t *testing.T, st core.Store) {
	ctx := context.Background()
	got, err := st.Collections(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty store: Collections = %v, %v", got, err)
	}
	w := newWriter(1)
	w.commit(t, st, put("b", "k", "1"), put("a", "k", "1"), put("a\x00x", "k", "1"))
	w.commit(t, st, del("c", "gone"), put("b", "j", "2"))
	got, err = st.Collections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a\x00x", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("Collections = %q, want %q (tombstones count)", got, want)
	}
}

// testAdvance covers a Merkle repair: records installed without changes,
// then the version vector raised past changes never logged here.
func testAdvance(t *testing.T, st core.Store) {
	ctx := context.Background()
	local, remote := newWriter(1), newWriter(2)
	kept := local.commit(t, st, put("c", "mine", "m"))
	early := remote.commit(t, st, put("c", "a", "1"), put("c", "b", "2"))
	later := remote.batch(put("c", "a", "3"))
	later = remote.batch(put("c", "b", "4")) // seq 4: seq 3 is never seen here
	repaired := later.Records[0]
	if err := st.Commit(ctx, core.Batch{Records: []core.Record{repaired}, Advance: core.VersionVector{remote.origin: 4}}); err != nil {
		t.Fatalf("commit repair: %v", err)
	}
	if vv := versionVector(t, st); vv[remote.origin] != 4 || vv[local.origin] != 1 {
		t.Fatalf("version vector after advance = %v", vv)
	}
	requireRecord(t, mustGet(t, st, "c", "b"), repaired)
	requireRecord(t, mustGet(t, st, "c", "a"), early.Records[0])
	requireRecord(t, mustGet(t, st, "c", "mine"), kept.Records[0])
	// The changes held stay, and nothing stands in for the skipped ones.
	requireLog(t, st, remote.origin, 1, 2)
	requireLog(t, st, local.origin, 1)
	if s := stats(t, st); s.Changes != 3 || s.Records != 3 {
		t.Fatalf("stats after advance = %+v, want 3 changes and 3 records", s)
	}
	// The origin's next change follows on from the advanced point.
	next := remote.batch(put("c", "a", "5"))
	if err := st.Commit(ctx, next); err != nil {
		t.Fatalf("commit after advance: %v", err)
	}
	requireRecord(t, mustGet(t, st, "c", "a"), next.Records[0])
	requireLog(t, st, remote.origin, 1, 2, 5)
	// An advance below what is held changes nothing.
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{remote.origin: 2}}); err != nil {
		t.Fatal(err)
	}
	if vv := versionVector(t, st); vv[remote.origin] != 5 {
		t.Fatalf("advance lowered the version vector: %v", vv)
	}
	if s := stats(t, st); s.Changes != 4 {
		t.Fatalf("stats after a stale advance = %+v, want 4 changes", s)
	}
}
