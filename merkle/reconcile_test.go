package merkle

import (
	"errors"
	"fmt"
	"testing"

	"github.com/devicemesh/federation/core"
)

// repair applies a diff the way the sync engine would: fetch what the
// remote has, drop what only the local side has (a one-way mirror). Tests
// hold no records, so it copies entry hashes.
func repair(local, remote *Tree, d Diff) {
	for _, k := range append(append([]string{}, d.RemoteOnly...), d.Changed...) {
		h, _ := remote.entryHash(k)
		local.put(position(k), k, h)
	}
	for _, k := range d.LocalOnly {
		local.Delete(k)
	}
}

func TestReconcileScenarios(t *testing.T) {
	fill := func(tr *Tree, from, to int, salt uint64) *Tree {
		for i := from; i < to; i++ {
			tr.Set(keyOf(i), digestOf(uint64(i)+salt))
		}
		return tr
	}
	tests := []struct {
		name                     string
		local, remote            *Tree
		local1, remote1, changed int
		maxRounds                int
	}{
		{"both empty", New(), New(), 0, 0, 0, 1},
		{"identical", fill(New(), 0, 5000, 0), fill(New(), 0, 5000, 0), 0, 0, 0, 1},
		{"local empty", New(), fill(New(), 0, 10, 0), 0, 10, 0, 1},
		{"remote empty", fill(New(), 0, 5000, 0), New(), 5000, 0, 0, 1},
		{"one changed among 20000", fill(fill(New(), 0, 20000, 0), 7, 8, 1), fill(New(), 0, 20000, 0), 0, 0, 1, 3},
		{"one extra remote among 20000", fill(New(), 0, 20000, 0), fill(New(), 0, 20001, 0), 0, 1, 0, 3},
		{"disjoint halves", fill(New(), 0, 3000, 0), fill(New(), 3000, 6000, 0), 3000, 3000, 0, 4},
		{"everything changed", fill(New(), 0, 3000, 0), fill(New(), 0, 3000, 1), 0, 0, 3000, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, s := exchange(t, tc.local, tc.remote, Config{Salt: 42})
			if len(d.LocalOnly) != tc.local1 || len(d.RemoteOnly) != tc.remote1 || len(d.Changed) != tc.changed {
				t.Fatalf("diff %d/%d/%d, want %d/%d/%d", len(d.LocalOnly), len(d.RemoteOnly), len(d.Changed),
					tc.local1, tc.remote1, tc.changed)
			}
			if s.Rounds > tc.maxRounds {
				t.Fatalf("%d rounds, want at most %d", s.Rounds, tc.maxRounds)
			}
			t.Logf("%d rounds, %d+%d bytes", s.Rounds, s.RequestBytes, s.ResponseBytes)
			repair(tc.local, tc.remote, d)
			if tc.local.Root() != tc.remote.Root() {
				t.Fatal("repairing the diff did not converge the roots")
			}
			if d2, s2 := exchange(t, tc.local, tc.remote, Config{Salt: 43}); d2.Len() != 0 || s2.Rounds != 1 {
				t.Fatalf("after repair: %d differences in %d rounds", d2.Len(), s2.Rounds)
			}
		})
	}
}

func TestReconcileRefusesHostileResponses(t *testing.T) {
	remoteKeys := New()
	for i := 0; i < 5; i++ {
		remoteKeys.Set(keyOf(i), digestOf(1))
	}
	listed := remoteKeys.Keys(Prefix{}) // in position order
	kfp := func(e Entry) KeyFP { return KeyFP{Key: e.Key} }
	foreign := "k"
	for PrefixOf(foreign, 1) == PrefixOf(listed[0].Key, 1) {
		foreign += "k"
	}
	listRoot := func() (*Reconciler, *Request) { // empty local tree: lists the root
		r := NewReconciler(New(), Config{})
		return r, r.Start()
	}
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"wrong shape", func() error {
			r, _ := listRoot()
			_, err := r.Next(&Response{})
			return err
		}, ErrUnexpected},
		{"converged with content", func() error {
			r, _ := listRoot()
			_, err := r.Next(&Response{Converged: true, Lists: []Listing{{}}})
			return err
		}, ErrUnexpected},
		{"expansion of wrong size", func() error {
			tr := New()
			tr.Set("a", digestOf(1))
			r := NewReconciler(tr, Config{RoundBudget: -1, ListThreshold: 1})
			tr.Set("b", digestOf(1))
			req := r.Start()
			if len(req.Expand) == 0 {
				return errors.New("no expansion")
			}
			_, err := r.Next(&Response{Nodes: [][]NodeFP{make([]NodeFP, 3)}, Lists: make([]Listing, len(req.List))})
			return err
		}, ErrUnexpected},
		{"out of order", func() error {
			r, _ := listRoot()
			_, err := r.Next(&Response{Lists: []Listing{{Entries: []KeyFP{kfp(listed[1]), kfp(listed[0])}}}})
			return err
		}, ErrUnexpected},
		{"duplicate", func() error {
			r, _ := listRoot()
			_, err := r.Next(&Response{Lists: []Listing{{Entries: []KeyFP{kfp(listed[0]), kfp(listed[0])}}}})
			return err
		}, ErrUnexpected},
		{"outside the listed range", func() error {
			r := NewReconciler(New(), Config{})
			req := r.Start()
			req.List[0].Prefix = PrefixOf(listed[0].Key, 1) // pretend we asked for one child
			_, err := r.Next(&Response{Lists: []Listing{{Entries: []KeyFP{{Key: foreign}}}}})
			return err
		}, ErrUnexpected},
		{"no progress", func() error {
			r, _ := listRoot()
			_, err := r.Next(&Response{Lists: []Listing{{More: true}}})
			return err
		}, ErrUnexpected},
		{"drip feed past MaxRounds", func() error {
			r := NewReconciler(New(), Config{MaxRounds: 3})
			r.Start()
			for i := 0; ; i++ {
				if _, err := r.Next(&Response{Lists: []Listing{{Entries: []KeyFP{kfp(listed[i])}, More: true}}}); err != nil {
					return err
				}
			}
		}, ErrUnexpected},
		{"too many differing nodes", func() error {
			tr := New()
			for i := 0; i < 200; i++ {
				tr.Set(keyOf(i), digestOf(1))
			}
			r := NewReconciler(tr, Config{RoundBudget: -1, MaxPending: 5})
			req := r.Start()
			nodes := make([]NodeFP, 16)
			for i := range nodes {
				nodes[i] = NodeFP{Count: 1000, FP: 1}
			}
			_, err := r.Next(&Response{Nodes: [][]NodeFP{nodes}, Lists: make([]Listing, len(req.List))})
			return err
		}, ErrLimit},
		{"next after done", func() error {
			r, _ := listRoot()
			if _, err := r.Next(&Response{Converged: true}); err != nil {
				return err
			}
			_, err := r.Next(&Response{Converged: true})
			return err
		}, ErrDone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != ErrDone && !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("err = %v does not wrap core.ErrProtocol", err)
			}
		})
	}
}

// A listing cut short by the responder's budget is continued, not lost.
func TestReconcilePagedListing(t *testing.T) {
	local, remote := New(), New()
	const n = 12000 // about 1.5 MB of keys: several responses' worth
	for i := 0; i < n; i++ {
		remote.Set(fmt.Sprintf("%s-%0100d", keyOf(i), i), digestOf(1))
	}
	d, s := exchange(t, local, remote, Config{})
	if len(d.RemoteOnly) != n || s.Rounds < s.ResponseBytes/ListBudget {
		t.Fatalf("%d remote-only keys in %d rounds", len(d.RemoteOnly), s.Rounds)
	}
	// A response is bounded by the budget (plus one entry).
	if per := s.ResponseBytes / s.Rounds; per > ListBudget+200 {
		t.Fatalf("%d response bytes per round", per)
	}
}
