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

// commitStore commits b to the store, with the write lock held. For a large
// batch it hashes the records' Merkle updates meanwhile, on another core,
// and returns them for afterCommit (nil otherwise: afterCommit hashes).
func (n *Node) commitStore(ctx context.Context, b core.Batch) ([]treeUpdate, error) {
	if len(b.Records) < hashAheadMin {
		return nil, n.store.Commit(ctx, b)
	}
	ups := make(chan []treeUpdate, 1)
	go func() { ups <- n.prepareTrees(b.Records) }()
	err := n.store.Commit(ctx, b)
	prepared := <-ups // always waited for: no goroutine outlives the call
	if err != nil {
		return nil, err
	}
	return prepared, nil
}

// afterCommit runs after every successful store commit (local or remote),
// with the write lock held: it keeps derived state in step and wakes the
// peers' senders. prepared holds the records' Merkle updates when
// commitStore hashed them already.
func (n *Node) afterCommit(records []core.Record, prepared []treeUpdate) {
	n.updateTrees(records, prepared)
	n.foldOps(context.Background(), registryOps(records), true)
	n.noteStale(records)
	n.changed.notify()
}
