package engine

import (
	"errors"
	"testing"

	"github.com/devicemesh/federation/core"
)

// TestHubFiltersDropsAndCloses: a subscription gets only its collections,
// a full buffer drops (counted per subscription and in total) instead of
// blocking the publisher, and Close closes every channel, later ones at
// once.
func TestHubFiltersDropsAndCloses(t *testing.T) {
	h := NewHub[string](1)
	all := h.Add(nil)
	notes := h.Add([]string{"notes"})
	h.Publish("notes", "n1")
	h.Publish("tasks", "t1") // all's buffer is full: dropped for it
	if got := <-all.C; got != "n1" {
		t.Fatalf("all got %q, want n1", got)
	}
	if got := <-notes.C; got != "n1" {
		t.Fatalf("notes got %q, want n1", got)
	}
	if all.Dropped() != 1 || notes.Dropped() != 0 {
		t.Fatalf("dropped: all %d, notes %d; want 1, 0", all.Dropped(), notes.Dropped())
	}
	if subs, dropped := h.Counts(); subs != 2 || dropped != 1 {
		t.Fatalf("counts %d, %d; want 2, 1", subs, dropped)
	}
	notes.Close()
	notes.Close() // idempotent
	if _, ok := <-notes.C; ok {
		t.Fatal("closed subscription still delivers")
	}
	h.Close()
	if _, ok := <-all.C; ok {
		t.Fatal("hub close left a subscription open")
	}
	if _, ok := <-h.Add(nil).C; ok {
		t.Fatal("a subscription to a closed hub is open")
	}
}

// TestTxBufLastWriteWins: a key written twice keeps its last write in its
// first position, a pending tombstone reads as not found, reserved
// collections are refused, and a done buffer refuses everything.
func TestTxBufLastWriteWins(t *testing.T) {
	var b TxBuf
	for _, w := range []struct {
		coll, key, val string
		del            bool
	}{{"c", "a", "1", false}, {"c", "b", "2", false}, {"c", "a", "3", false}, {"c", "b", "", true}} {
		if err := b.Set(w.coll, w.key, []byte(w.val), w.del); err != nil {
			t.Fatal(err)
		}
	}
	ops := b.Ops()
	if b.Len() != 2 || ops[0].Key != "a" || string(ops[0].Value) != "3" || ops[1].Key != "b" || !ops[1].Deleted {
		t.Fatalf("ops %+v", ops)
	}
	if v, ok, err := b.Pending("c", "a"); !ok || err != nil || string(v) != "3" {
		t.Fatalf("pending a: %q %v %v", v, ok, err)
	}
	if _, ok, err := b.Pending("c", "b"); !ok || !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("pending tombstone: %v %v", ok, err)
	}
	if _, ok, _ := b.Pending("c", "z"); ok {
		t.Fatal("an unwritten key is pending")
	}
	if err := b.Set("_fed.x", "k", nil, false); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("reserved collection: %v", err)
	}
	b.Done()
	if err := b.Set("c", "a", nil, false); !errors.Is(err, core.ErrTxnDone) {
		t.Fatalf("set after done: %v", err)
	}
	if _, _, err := b.Pending("c", "a"); !errors.Is(err, core.ErrTxnDone) {
		t.Fatalf("get after done: %v", err)
	}
}
