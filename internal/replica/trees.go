package replica

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
)

// trees holds one Merkle tree per collection that syncs, kept in step with
// the store on every commit (never rebuilt per sync).
type trees struct {
	mu sync.Mutex
	m  map[string]*merkle.Tree
}

// loadTrees builds the trees from the store once, at start.
func (n *Replica) loadTrees(ctx context.Context) error {
	colls, err := n.store.Collections(ctx)
	if err != nil {
		return fmt.Errorf("load merkle trees: %w", err)
	}
	n.trees.m = map[string]*merkle.Tree{}
	for _, c := range colls {
		if !n.policy(c).Syncs() {
			continue
		}
		t := merkle.New()
		err := n.store.Scan(ctx, c, core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
			t.Set(r.Key, merkle.RecordDigest(r))
			return nil
		})
		if err != nil {
			return fmt.Errorf("load merkle tree %q: %w", c, err)
		}
		n.trees.m[c] = t
	}
	return nil
}

// treeUpdate is one record's Merkle update, hashed ahead of time.
type treeUpdate struct {
	coll string
	up   merkle.Update
}

// prepareTrees hashes the Merkle updates of records (those of collections
// that sync). It touches no shared state, so it may run while the store
// commits the records.
func (n *Replica) prepareTrees(records []core.Record) []treeUpdate {
	out := make([]treeUpdate, 0, len(records))
	for i := range records {
		r := &records[i]
		if n.policy(r.Collection).Syncs() {
			out = append(out, treeUpdate{r.Collection, merkle.PrepareRecord(*r)})
		}
	}
	return out
}

// treeUndo is what reverts one applyTreesLocked: each update's undo, in
// order, and the collections whose tree it created.
type treeUndo struct {
	ups     []treeRevert
	created []string
}

type treeRevert struct {
	t  *merkle.Tree
	un merkle.Undo
}

// applyTreesLocked folds record versions into the trees from their
// prepared updates, recording in undo (when not nil) how to revert them.
// Called with the trees' lock held (by the caller, or by the goroutine
// the caller works for).
func (n *Replica) applyTreesLocked(prepared []treeUpdate, undo *treeUndo) {
	if undo != nil {
		undo.ups = make([]treeRevert, 0, len(prepared))
	}
	for _, u := range prepared {
		t := n.trees.m[u.coll]
		if t == nil {
			t = merkle.New()
			n.trees.m[u.coll] = t
			if undo != nil {
				undo.created = append(undo.created, u.coll)
			}
		}
		if undo == nil {
			t.Apply(u.up)
			continue
		}
		undo.ups = append(undo.ups, treeRevert{t, t.ApplyUndoable(u.up)})
	}
}

// revertTreesLocked undoes an applyTreesLocked, newest update first, and
// drops the trees it created. Called with the trees' lock held.
func (n *Replica) revertTreesLocked(undo *treeUndo) {
	for i := len(undo.ups) - 1; i >= 0; i-- {
		undo.ups[i].t.Revert(undo.ups[i].un)
	}
	for _, c := range undo.created {
		delete(n.trees.m, c)
	}
}

// WithTree runs fn on a collection's tree (an empty one if the collection
// has no records here) under the trees' lock.
func (n *Replica) WithTree(collection string, fn func(t *merkle.Tree)) {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	t := n.trees.m[collection]
	if t == nil {
		t = merkle.New()
	}
	fn(t)
}

// HoldTree runs fn on a collection's tree under the trees' lock, creating
// an empty one if needed, so that a reconciler can hold the tree across
// rounds (each later round under WithTrees): later commits fold into that
// same tree.
func (n *Replica) HoldTree(collection string, fn func(t *merkle.Tree)) {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	t := n.trees.m[collection]
	if t == nil {
		t = merkle.New()
		n.trees.m[collection] = t
	}
	fn(t)
}

// WithTrees runs fn under the trees' lock: commits do not change any tree
// while it runs (for a merkle.Reconciler's next round over a tree from
// HoldTree).
func (n *Replica) WithTrees(fn func()) {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	fn()
}

// Root returns the Merkle root of a collection's records (tombstones
// included). Two devices with equal roots hold identical records in it.
func (n *Replica) Root(collection string) merkle.Digest {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	if t := n.trees.m[collection]; t != nil {
		return t.Root()
	}
	return merkle.New().Root()
}

// Roots returns the Merkle root of every collection that syncs and holds
// records here.
func (n *Replica) Roots() map[string]merkle.Digest {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	out := make(map[string]merkle.Digest, len(n.trees.m))
	for c, t := range n.trees.m {
		if t.Len() > 0 {
			out[c] = t.Root()
		}
	}
	return out
}

// SyncedCollections lists the collections with records here, sorted.
func (n *Replica) SyncedCollections() []string {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	out := make([]string, 0, len(n.trees.m))
	for c, t := range n.trees.m {
		if t.Len() > 0 {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// Snapshot returns the version vector and the roots of the collections
// that sync, consistent with each other (read under the write lock).
func (n *Replica) Snapshot(ctx context.Context) (core.VersionVector, map[string][32]byte, error) {
	n.writeMu.Lock()
	defer n.unlock()
	vv, err := n.store.VersionVector(ctx)
	if err != nil {
		return nil, nil, err
	}
	roots := map[string][32]byte{}
	for c, d := range n.Roots() {
		roots[c] = d
	}
	return vv, roots, nil
}
