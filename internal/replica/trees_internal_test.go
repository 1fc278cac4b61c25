package replica

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
	"github.com/devicemesh/federation/store/memstore"
)

// failingStore fails Commit while fail is set.
type failingStore struct {
	*memstore.Store
	fail atomic.Bool
}

var errCommitFailed = errors.New("commit failed (test)")

func (s *failingStore) Commit(ctx context.Context, b core.Batch) error {
	if s.fail.Load() {
		return errCommitFailed
	}
	return s.Store.Commit(ctx, b)
}

// A large batch folds into the Merkle trees while the store writes; when
// the store commit fails, the trees are reverted before anyone can see
// them: the roots, the collections and a tree the batch created are as
// before, and the same batch applied again gives the roots of a replica
// that never failed.
func TestFailedCommitLeavesTreesAsTheyWere(t *testing.T) {
	ctx := context.Background()
	ts := core.MakeTimestamp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), 0)
	var first Txn
	for i := range 10 {
		c := change(peerB, uint64(i+1), ts, "notes", fmt.Sprintf("k%03d", i), "v1", nil)
		c.TxnFirst, c.TxnLen = 1, 10
		first = append(first, c)
	}
	// More than hashAheadMin changes: five keys rewritten, new keys, and a
	// collection the replica has no tree for yet.
	var big Txn
	n := hashAheadMin + 50
	for i := range n {
		coll, key := "notes", fmt.Sprintf("k%03d", i+5)
		if i%3 == 0 {
			coll = "photos"
		}
		c := change(peerA, uint64(i+1), ts+core.Timestamp(i+1), coll, key, "v2", core.VersionVector{peerB: 10})
		c.TxnFirst, c.TxnLen = 1, uint32(n)
		big = append(big, c)
	}

	st := &failingStore{Store: memstore.New()}
	h := newHarness(t, Config{Store: st})
	if _, err := h.rep.ApplyRemote(ctx, []Txn{first}); err != nil {
		t.Fatal(err)
	}
	before, colls := h.rep.Roots(), h.rep.SyncedCollections()
	st.fail.Store(true)
	if _, err := h.rep.ApplyRemote(ctx, []Txn{big}); !errors.Is(err, errCommitFailed) {
		t.Fatalf("apply with a failing store: %v", err)
	}
	after := h.rep.Roots()
	if len(after) != len(before) || after["notes"] != before["notes"] {
		t.Fatalf("roots after a failed commit: %v, want %v", after, before)
	}
	if got := h.rep.SyncedCollections(); fmt.Sprint(got) != fmt.Sprint(colls) {
		t.Fatalf("collections after a failed commit: %v, want %v", got, colls)
	}
	h.rep.WithTrees(func() {
		if _, ok := h.rep.trees.m["photos"]; ok {
			t.Error("the tree the failed batch created is still there")
		}
	})
	if h.rep.Root("photos") != merkle.New().Root() {
		t.Fatal("photos has a root")
	}

	st.fail.Store(false)
	if _, err := h.rep.ApplyRemote(ctx, []Txn{big}); err != nil {
		t.Fatal(err)
	}
	ref := newHarness(t, Config{})
	for _, txn := range []Txn{first, big} {
		if _, err := ref.rep.ApplyRemote(ctx, []Txn{txn}); err != nil {
			t.Fatal(err)
		}
	}
	got, want := h.rep.Roots(), ref.rep.Roots()
	if len(want) != 2 || len(got) != len(want) || got["notes"] != want["notes"] || got["photos"] != want["photos"] {
		t.Fatalf("roots after the retry: %v, want %v", got, want)
	}
	// The trees hold what the store holds.
	for _, coll := range []string{"notes", "photos"} {
		fresh := merkle.New()
		if err := st.Scan(ctx, coll, core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
			fresh.Set(r.Key, merkle.RecordDigest(r))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fresh.Root() != got[coll] {
			t.Fatalf("%s: the tree and the store differ", coll)
		}
	}
}
