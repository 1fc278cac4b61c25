package replica

import (
	"context"
	"sync"

	"github.com/devicemesh/federation/core"
)

// Notifier wakes every waiter when something changes (the store, for the
// replica's): waiters take the current channel with Wait and are woken
// when Notify closes it. It is safe for concurrent use.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewNotifier returns a Notifier with no waiter woken yet.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{})} }

// Wait returns the channel the next Notify closes.
func (nf *Notifier) Wait() <-chan struct{} {
	nf.mu.Lock()
	defer nf.mu.Unlock()
	return nf.ch
}

// Notify wakes every waiter.
func (nf *Notifier) Notify() {
	nf.mu.Lock()
	close(nf.ch)
	nf.ch = make(chan struct{})
	nf.mu.Unlock()
}

// hashAheadMin is the number of records from which commitStore updates
// the Merkle trees on another goroutine while the store writes: below it,
// starting a goroutine costs more than it saves.
const hashAheadMin = 256

// commitStore commits b to the store, with the write lock held, and folds
// its records into the Merkle trees. The trees' lock is held from before
// the store commit until the trees reflect it, so a reader that sees a
// record in the store (Get, Scan) and then asks for Root or Roots gets a
// root that covers it: the store never runs ahead of the trees as seen by
// one reader. (It did while a large value was being hashed after the
// commit: TestLargeValuesNeverExceedFrameLimit compared roots in that
// window and failed under load.) A small batch is hashed before taking
// that lock and folded in after the store commit. A large one is hashed
// and folded in on another goroutine while the store writes (on behalf
// of this one, which holds the lock and touches no tree meanwhile), each
// update undoably: if the store commit fails, the trees are reverted to
// what they held, before the lock is released, so no reader ever sees
// trees ahead of the store either.
func (n *Replica) commitStore(ctx context.Context, b core.Batch) error {
	if len(b.Records) < hashAheadMin {
		prepared := n.prepareTrees(b.Records)
		n.trees.mu.Lock()
		defer n.trees.mu.Unlock()
		if err := n.store.Commit(ctx, b); err != nil {
			return err
		}
		n.applyTreesLocked(prepared, nil)
		return nil
	}
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	applied := make(chan *treeUndo, 1)
	go func() {
		undo := &treeUndo{}
		n.applyTreesLocked(n.prepareTrees(b.Records), undo)
		applied <- undo
	}()
	err := n.store.Commit(ctx, b)
	undo := <-applied // always waited for: no goroutine outlives the call
	if err != nil {
		n.revertTreesLocked(undo)
		return err
	}
	return nil
}

// afterCommit runs after every successful store commit (local, remote,
// repair or advance), with the write lock held: the observers keep derived
// state in step, handing blocking work to n.after (run by unlock once the
// lock is released), and the peers' senders are woken. (commitStore
// already updated the Merkle trees.)
func (n *Replica) afterCommit(src Source, records []core.Record) {
	c := Commit{Source: src, Records: records}
	for _, o := range n.observers {
		if f := o.Committed(c); f != nil {
			n.after = append(n.after, f)
		}
	}
	n.changed.Notify()
}
