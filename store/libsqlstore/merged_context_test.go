package libsqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// TestMergedRecordKeepsItsContext: a remote change whose value wins a
// merge is committed with a record of that change's dot and value but the
// merged (wider) causal context. The store keeps the merged record, before
// and after a reopen; it used to install the change itself, so the wider
// context was lost on disk (and later merges judged concurrency
// differently from device to device).
func TestMergedRecordKeepsItsContext(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st := open(t, path, libsqlstore.Options{})
	a, b := core.DeviceID{1}, core.DeviceID{2}
	local := core.Change{Record: core.Record{Collection: "c", Key: "k", Value: []byte("mine"),
		Timestamp: 1000, Origin: a, Seq: 1, Context: core.VersionVector{a: 1}}, TxnFirst: 1, TxnLen: 1}
	if err := st.Commit(ctx, core.Batch{Changes: []core.Change{local}, Records: []core.Record{local.Record}}); err != nil {
		t.Fatal(err)
	}
	remote := core.Change{Record: core.Record{Collection: "c", Key: "k", Value: []byte("theirs"),
		Timestamp: 2000, Origin: b, Seq: 1, Context: core.VersionVector{b: 1}}, TxnFirst: 1, TxnLen: 1}
	merged := remote.Record
	merged.Context = core.VersionVector{a: 1, b: 1}
	if err := st.Commit(ctx, core.Batch{Changes: []core.Change{remote}, Records: []core.Record{merged}}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, get func() (core.Record, error)) {
		r, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if r.Context.Compare(merged.Context) != core.Equal || string(r.Value) != "theirs" {
			t.Fatalf("%s: stored %q with context %v, want %q with %v", when, r.Value, r.Context, "theirs", merged.Context)
		}
	}
	check("after commit", func() (core.Record, error) { return st.Get(ctx, "c", "k") })
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open(t, path, libsqlstore.Options{})
	check("after reopen", func() (core.Record, error) { return st.Get(ctx, "c", "k") })
}
