package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/devicemesh/federation/core"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call; the suite closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) core.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st core.Store)
	}{
		{"GetMissing", testGetMissing},
		{"CommitAndGet", testCommitAndGet},
		{"CallerOwnsSlices", testCallerOwnsSlices},
		{"EmptyValueIsNotTombstone", testEmptyValue},
		{"Tombstones", testTombstones},
		{"LastWriteOfKeyInBatchWins", testLastWriteWins},
		{"ScanRanges", testScanRanges},
		{"ScanStopsOnError", testScanStopsOnError},
		{"ScanPaging", testScanPaging},
		{"ReplayIsNoOp", testReplay},
		{"GapRefusesWholeBatch", testGapRefused},
		{"InvalidBatchRefused", testInvalidBatch},
		{"RecordsDifferFromChanges", testResolvedRecords},
		{"MergedContextWiderThanChange", testMergedContext},
		{"ChangesOrderAndLimit", testChangesOrderLimit},
		{"ChangesKeepOverwrittenValues", testChangesOverwritten},
		{"VersionVector", testVersionVector},
		{"Truncate", testTruncate},
		{"TruncateKeepsCurrentValues", testTruncateKeepsValues},
		{"Meta", testMeta},
		{"Stats", testStats},
		{"CanceledContext", testCanceled},
		{"LargeValues", testLargeValues},
		{"ConcurrentReadersAndWriters", testConcurrent},
		{"Collections", testCollections},
		{"GetMany", testGetMany},
		{"CountChanges", testCountChanges},
		{"AdvanceAfterRepair", testAdvance},
		{"AdvanceLeavesVisibleGap", testAdvanceGap},
		{"CommitAfterAdvance", testCommitAfterAdvance},
		{"TruncateAfterAdvance", testTruncateAfterAdvance},
		{"AdvanceReplayIsNoOp", testAdvanceReplay},
		{"Close", testClose},
		{"Stubs", testStubs},
		{"StubFilledInPlace", testStubFilled},
		{"TruncateKeepsStubs", testTruncateKeepsStubs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { _ = st.Close() })
			tc.fn(t, st)
		})
	}
}

func testGetMissing(t *testing.T, st core.Store) {
	requireNotFound(t, st, "c", "nope")
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"))
	requireNotFound(t, st, "c", "b")
	requireNotFound(t, st, "other", "a")
}

func testCommitAndGet(t *testing.T, st core.Store) {
	w := newWriter(1)
	b := w.commit(t, st, put("c", "a", "alpha"), put("c", "b", "beta"), put("d", "a", "delta"))
	for _, r := range b.Records {
		requireRecord(t, mustGet(t, st, r.Collection, r.Key), r)
	}
	// Keys and collections are arbitrary bytes.
	odd := w.commit(t, st, put("c\x00x", "k\x00\xff\xfe", "nul"), put("c", "2024-01-02", "date-like"), put("c", "", "empty key"))
	for _, r := range odd.Records {
		requireRecord(t, mustGet(t, st, r.Collection, r.Key), r)
	}
	requireNotFound(t, st, "c", "k")
}

func testCallerOwnsSlices(t *testing.T, st core.Store) {
	w := newWriter(1)
	b := w.batch(put("c", "k", "original"))
	want := b.Records[0]
	want.Value = slices.Clone(want.Value)
	want.Context = want.Context.Clone()
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// Scribbling on the committed batch must not reach the store.
	b.Records[0].Value[0] = 'X'
	b.Changes[0].Value[0] = 'X'
	b.Records[0].Context[device(9)] = 99
	got := mustGet(t, st, "c", "k")
	requireRecord(t, got, want)
	// Scribbling on a returned record must not reach the store either.
	got.Value[0] = 'Y'
	got.Context[device(8)] = 1
	requireRecord(t, mustGet(t, st, "c", "k"), want)
	cs := changes(t, st, w.origin, 0, 0)
	cs[0].Value[0] = 'Z'
	if v := changes(t, st, w.origin, 0, 0)[0].Value; !bytes.Equal(v, []byte("original")) {
		t.Fatalf("changelog value changed to %q through a returned slice", v)
	}
}

func testEmptyValue(t *testing.T, st core.Store) {
	w := newWriter(1)
	b := w.commit(t, st, op{coll: "c", key: "empty", value: []byte{}})
	got := mustGet(t, st, "c", "empty")
	requireRecord(t, got, b.Records[0])
	if got.Value == nil || len(got.Value) != 0 {
		t.Fatalf("empty value came back as %#v", got.Value)
	}
	if n := len(scanAll(t, st, "c", core.KeyRange{})); n != 1 {
		t.Fatalf("scan found %d records, want the empty-valued one", n)
	}
}

func testTombstones(t *testing.T, st core.Store) {
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"), put("c", "b", "2"), put("c", "c", "3"))
	b := w.commit(t, st, del("c", "b"), del("c", "never-written"))
	for _, r := range b.Records {
		got := mustGet(t, st, "c", r.Key)
		requireRecord(t, got, r)
		if !got.Deleted {
			t.Fatalf("%q: tombstone not marked deleted", r.Key)
		}
	}
	if got := keys(scanAll(t, st, "c", core.KeyRange{})); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("scan without tombstones = %q", got)
	}
	all := scanAll(t, st, "c", core.KeyRange{IncludeDeleted: true})
	if got := keys(all); !slices.Equal(got, []string{"a", "b", "c", "never-written"}) {
		t.Fatalf("scan with tombstones = %q", got)
	}
	if !all[1].Deleted || all[0].Deleted {
		t.Fatalf("scan with tombstones: wrong Deleted flags")
	}
	// A key can come back to life.
	b = w.commit(t, st, put("c", "b", "again"))
	requireRecord(t, mustGet(t, st, "c", "b"), b.Records[0])
}

func testLastWriteWins(t *testing.T, st core.Store) {
	w := newWriter(1)
	b := w.batch(put("c", "k", "first"))
	second := w.batch(put("c", "k", "second"))
	b.Changes = append(b.Changes, second.Changes...)
	b.Records = append(b.Records, second.Records...)
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "k"), second.Records[0])
	if n := len(scanAll(t, st, "c", core.KeyRange{})); n != 1 {
		t.Fatalf("%d records for one key", n)
	}
}

func testScanStopsOnError(t *testing.T, st core.Store) {
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"), put("c", "b", "2"), put("c", "c", "3"))
	stop := errors.New("stop")
	calls := 0
	err := st.Scan(context.Background(), "c", core.KeyRange{}, func(core.Record) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Fatalf("scan returned %v after %d calls, want the callback's error after 2", err, calls)
	}
	calls = 0
	if err := st.Scan(context.Background(), "missing", core.KeyRange{}, func(core.Record) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("scan of an unknown collection: err=%v calls=%d", err, calls)
	}
}

// testMergedContext commits a remote change whose resolution keeps the
// change's own value, timestamp and dot but merges the causal contexts: the
// store must hold the merged record (the one a node's Merkle tree hashes),
// not the change as it arrived.
func testMergedContext(t *testing.T, st core.Store) {
	a, b := newWriter(1), newWriter(2)
	a.commit(t, st, put("c", "k", "same"), put("c", "gone", "x"))
	remote := b.batch(put("c", "k", "same"), del("c", "gone"))
	var recs []core.Record
	for _, r := range remote.Records {
		r.Context = r.Context.Clone()
		r.Context.Merge(core.VersionVector{a.origin: 2})
		recs = append(recs, r)
	}
	if err := st.Commit(context.Background(), core.Batch{Changes: remote.Changes, Records: recs}); err != nil {
		t.Fatal(err)
	}
	for _, want := range recs {
		requireRecord(t, mustGet(t, st, want.Collection, want.Key), want)
	}
	if got := scanAll(t, st, "c", core.KeyRange{IncludeDeleted: true}); len(got) != 2 {
		t.Fatalf("scan: %d records, want 2", len(got))
	} else {
		requireRecord(t, got[0], recs[1])
		requireRecord(t, got[1], recs[0])
	}
	// The changelog keeps each change as it was written.
	for i, c := range changes(t, st, b.origin, 0, 0) {
		if c.Context.Compare(remote.Changes[i].Context) != core.Equal {
			t.Fatalf("change %d context %v, want %v", c.Seq, c.Context, remote.Changes[i].Context)
		}
	}
}

func testResolvedRecords(t *testing.T, st core.Store) {
	a, b := newWriter(1), newWriter(2)
	a.commit(t, st, put("c", "k", "from-a"))
	// A remote change arrives whose resolution merges both values: the
	// changelog keeps what b wrote, the record holds the merged outcome.
	remote := b.batch(put("c", "k", "from-b"))
	merged := remote.Records[0]
	merged.Value = []byte("merged")
	merged.Context = merged.Context.Clone()
	merged.Context.Merge(core.VersionVector{a.origin: 1})
	batch := core.Batch{Changes: remote.Changes, Records: []core.Record{merged}}
	if err := st.Commit(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "k"), merged)
	if cs := changes(t, st, b.origin, 0, 0); len(cs) != 1 || string(cs[0].Value) != "from-b" {
		t.Fatalf("changelog of b = %+v, want the original change", cs)
	}
	// A change that does not alter the current version (the receiver's
	// version wins) is logged without touching the record.
	losing := b.batch(put("c", "k", "ignored"))
	if err := st.Commit(context.Background(), core.Batch{Changes: losing.Changes}); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "k"), merged)
	if got := versionVector(t, st)[b.origin]; got != 2 {
		t.Fatalf("version vector of b = %d, want 2", got)
	}
	// Records alone (a repair) install without a changelog entry.
	repair := core.Record{Collection: "c", Key: "repaired", Value: []byte("r"), Timestamp: 5,
		Origin: a.origin, Seq: 1, Context: core.VersionVector{a.origin: 1}}
	if err := st.Commit(context.Background(), core.Batch{Records: []core.Record{repair}}); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "c", "repaired"), repair)
}
