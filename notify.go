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

// afterCommit runs after every successful store commit (local or remote),
// with the write lock held: it keeps derived state in step and wakes the
// peers' senders.
func (n *Node) afterCommit(records []core.Record) {
	n.updateTrees(records)
	n.foldOps(context.Background(), registryOps(records))
	n.noteStale(records)
	n.changed.notify()
}
