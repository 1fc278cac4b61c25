package dht

import (
	"errors"
	"fmt"
	"testing"

	"github.com/anacrolix/dht/v2/bep44"
)

// TestStoreBounded checks that the node's BEP 44 store keeps at most its
// bound, forgetting the least recently written items first.
func TestStoreBounded(t *testing.T) {
	s := newStore(10)
	item := func(i int) *bep44.Item { return &bep44.Item{V: fmt.Sprintf("value %d", i)} }
	for i := range 15 {
		if err := s.Put(item(i)); err != nil {
			t.Fatal(err)
		}
		if i == 7 {
			// Rewriting item 0 makes it the most recent: it survives.
			if err := s.Put(item(0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := s.len(); n != 10 {
		t.Fatalf("store holds %d items, want its bound 10", n)
	}
	for i := range 15 {
		_, err := s.Get(item(i).Target())
		kept := i == 0 || i >= 6
		if kept && err != nil {
			t.Errorf("item %d evicted: %v", i, err)
		}
		if !kept && !errors.Is(err, bep44.ErrItemNotFound) {
			t.Errorf("item %d kept (err %v), want it evicted", i, err)
		}
	}
	if err := s.Del(item(0).Target()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(item(0).Target()); !errors.Is(err, bep44.ErrItemNotFound) {
		t.Fatalf("deleted item still there: %v", err)
	}
	if n := s.len(); n != 9 {
		t.Fatalf("store holds %d items after a delete, want 9", n)
	}
}
