package storetest

import (
	"context"
	"testing"

	"github.com/devicemesh/federation/core"
)

// manyGetter is a store that reads many keys at once (both of this
// module's).
type manyGetter interface {
	GetMany(ctx context.Context, coll string, keys []string) (map[string]core.Record, error)
}

// stubBatch is w's next transaction: a stub of a message, a summary held
// whole, and a summary held as a stub.
func stubBatch(w *writer) core.Batch {
	b := w.batch(put("conv", "m1", "a long message"), put("conv", "s1", "summary"), put("conv", "s2", "summary two"))
	for i := range b.Changes {
		r := &b.Changes[i].Record
		switch r.Key {
		case "m1":
			*r = r.AsStub()
		case "s1":
			r.Summary = true
		case "s2":
			r.Summary = true
			*r = r.AsStub()
		}
		b.Records[i] = *r
	}
	return b
}

// testStubs: a stub (a version without its value) and the summary flag
// survive a commit in the records and the changelog, through every read.
func testStubs(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	b := stubBatch(w)
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Records {
		requireRecord(t, mustGet(t, st, r.Collection, r.Key), r)
	}
	m1 := mustGet(t, st, "conv", "m1")
	if !m1.Stub || m1.Value != nil || m1.Size() != len("a long message") || m1.Digest() != core.ValueDigest([]byte("a long message")) {
		t.Fatalf("stub read back as %+v", m1)
	}
	got := scanAll(t, st, "conv", core.KeyRange{})
	if len(got) != 3 {
		t.Fatalf("scan: %d records, want 3", len(got))
	}
	for i, r := range got {
		requireRecord(t, r, b.Records[i])
	}
	var changes []core.Change
	if err := st.Changes(ctx, w.origin, 0, 0, func(c core.Change) error { changes = append(changes, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 {
		t.Fatalf("%d changes, want 3", len(changes))
	}
	for i, c := range changes {
		requireRecord(t, c.Record, b.Changes[i].Record)
	}
	if bg, ok := st.(manyGetter); ok {
		m, err := bg.GetMany(ctx, "conv", []string{"m1", "s2"})
		if err != nil {
			t.Fatal(err)
		}
		requireRecord(t, m["m1"], b.Records[0])
		requireRecord(t, m["s2"], b.Records[2])
	}
	// An inline record (a version whose context is wider than its change's)
	// keeps its stub too.
	wide := b.Records[0]
	wide.Context = wide.Context.Clone()
	wide.Context[device(9)] = 1
	if err := st.Commit(ctx, core.Batch{Records: []core.Record{wide}}); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "conv", "m1"), wide)
}

// testStubFilled: installing the full version over a stub (a fetched value,
// a batch of records only) replaces the record and leaves the changelog's
// stub as it was.
func testStubFilled(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	b := stubBatch(w)
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	full := b.Records[0]
	full.Stub, full.ValueSize, full.ValueDigest, full.Value = false, 0, [32]byte{}, []byte("a long message")
	if err := st.Commit(ctx, core.Batch{Records: []core.Record{full}}); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, mustGet(t, st, "conv", "m1"), full)
	var first core.Change
	if err := st.Changes(ctx, w.origin, 0, 1, func(c core.Change) error { first = c; return nil }); err != nil {
		t.Fatal(err)
	}
	requireRecord(t, first.Record, b.Changes[0].Record)
}

// testTruncateKeepsStubs: a stub whose changelog entry is truncated stays
// a stub, with its size, digest and summary flag.
func testTruncateKeepsStubs(t *testing.T, st core.Store) {
	ctx := context.Background()
	w := newWriter(1)
	b := stubBatch(w)
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Truncate(ctx, versionVector(t, st)); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.Records {
		requireRecord(t, mustGet(t, st, r.Collection, r.Key), r)
	}
}
