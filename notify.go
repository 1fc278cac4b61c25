package federation

import (
	"context"
	"sync"

	"github.com/devicemesh/federation/core"
)

// notifier wakes every waiter when the store changes: waiters take the
// current channel with wait and are woken when notify closes it.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (nf *notifier) wait() <-chan struct{} {
	nf.mu.Lock()
	defer nf.mu.Unlock()
	return nf.ch
}

func (nf *notifier) notify() {
	nf.mu.Lock()
	close(nf.ch)
	nf.ch = make(chan struct{})
	nf.mu.Unlock()
}

// hashAheadMin is the number of records from which commitStore hashes the
// Merkle updates on another goroutine while the store writes: below it,
// starting a goroutine costs more than it saves.
const hashAheadMin = 256

// commitStore commits b to the store, with the write lock held, and folds
// its records into the Merkle trees. The trees' lock is held from before
// the store commit until the trees reflect it, so a reader that sees a
// record in the store (Get, Scan) and then asks for Root or Roots gets a
// root that covers it: the store never runs ahead of the trees as seen by
// one reader. (It did while a large value was being hashed after the
// commit: TestLargeValuesNeverExceedFrameLimit compared roots in that
// window and failed under load.) The records' Merkle updates are hashed
// before taking that lock; for a large batch on another goroutine, while
// the store writes.
func (n *Node) commitStore(ctx context.Context, b core.Batch) error {
	var prepared []treeUpdate
	var ups chan []treeUpdate
	if len(b.Records) < hashAheadMin {
		prepared = n.prepareTrees(b.Records)
	} else {
		ups = make(chan []treeUpdate, 1)
		go func() { ups <- n.prepareTrees(b.Records) }()
	}
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	err := n.store.Commit(ctx, b)
	if ups != nil {
		prepared = <-ups // always waited for: no goroutine outlives the call
	}
	if err != nil {
		return err
	}
	n.applyTreesLocked(prepared)
	return nil
}

// afterCommit runs after every successful store commit (local or remote),
// with the write lock held: it keeps derived state in step and wakes the
// peers' senders. (commitStore already updated the Merkle trees.)
func (n *Node) afterCommit(records []core.Record) {
	n.foldOps(context.Background(), registryOps(records), true)
	n.noteStale(records)
	n.changed.notify()
}
