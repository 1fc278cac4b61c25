package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// Reembedder is the Observer that hands stale vectors to the host: a merge
// that marked a vector stale (two devices embedded different content under
// one id; the merged record keeps the winning content, flagged until
// re-embedded) queues it, and Run calls the host's conflict.ReembedFunc
// for it, then writes conflict.Refresh(value, vector) as a local write,
// which clears the flag on every device. The hook runs on Run's goroutine,
// one call at a time, outside the write lock, and may block on the host's
// model.
type Reembedder struct {
	n       *Replica
	fn      conflict.ReembedFunc
	log     *slog.Logger
	reembed chan reembedJob // stale vectors waiting for fn
}

// NewReembedder returns the re-embed observer of n, calling fn. Register it
// with n.Observe and run Run on a goroutine.
func NewReembedder(n *Replica, fn conflict.ReembedFunc) *Reembedder {
	return &Reembedder{n: n, fn: fn, log: n.log, reembed: make(chan reembedJob, reembedQueue)}
}

// reembedQueue bounds the stale vectors waiting for the hook; beyond it
// they stay flagged (conflict.NeedsReembed) for the host to find.
const reembedQueue = 1024

type reembedJob struct{ collection, key string }

// Committed queues the stale vectors among committed records (write lock
// held; it never blocks: a full queue leaves them flagged).
func (e *Reembedder) Committed(c Commit) func() {
	e.noteStale(c.Records)
	return nil
}

// noteStale queues stale vectors among committed records (write lock held).
func (e *Reembedder) noteStale(records []core.Record) {
	for _, r := range records {
		if r.Deleted {
			continue
		}
		if _, ok := e.n.resolver(r.Collection).(conflict.VectorMerge); !ok {
			continue
		}
		if stale, err := conflict.NeedsReembed(r.Value); err != nil || !stale {
			continue
		}
		select {
		case e.reembed <- reembedJob{r.Collection, r.Key}:
		default:
			e.log.Warn("re-embed queue full; vector stays flagged", "collection", r.Collection)
		}
	}
}

// Run calls the host's hook for queued stale vectors until ctx ends.
func (e *Reembedder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-e.reembed:
			if err := e.refresh(ctx, j); err != nil && !errors.Is(err, context.Canceled) {
				e.log.Warn("re-embed failed", "collection", j.collection, "err", err)
			}
		}
	}
}

func (e *Reembedder) refresh(ctx context.Context, j reembedJob) error {
	v, err := e.value(ctx, j)
	if err != nil {
		return err
	}
	if stale, err := conflict.NeedsReembed(v); err != nil || !stale {
		return err
	}
	stale, err := conflict.DecodeEmbedding(v)
	if err != nil {
		return err
	}
	vec, err := e.fn(ctx, j.collection, j.key, stale)
	if err != nil {
		return err
	}
	return e.n.Update(ctx, "reembed", func(ctx context.Context) ([]Op, error) {
		cur, err := e.value(ctx, j)
		if err != nil {
			return nil, err
		}
		if string(cur) != string(v) {
			return nil, nil // changed meanwhile: a later pass sees the new value
		}
		fresh, err := conflict.Refresh(cur, vec)
		if err != nil {
			return nil, err
		}
		return []Op{{Collection: j.collection, Key: j.key, Value: fresh}}, nil
	})
}

// value reads the live value of a queued vector.
func (e *Reembedder) value(ctx context.Context, j reembedJob) ([]byte, error) {
	if err := e.n.alive(); err != nil {
		return nil, err
	}
	r, err := e.n.store.Get(ctx, j.collection, j.key)
	if err != nil {
		return nil, err
	}
	if r.Deleted {
		return nil, fmt.Errorf("re-embed %s/%q: %w", j.collection, j.key, core.ErrNotFound)
	}
	return r.Value, nil
}
