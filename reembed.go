package federation

import (
	"context"
	"errors"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// ReembedFunc computes a fresh embedding for a vector that a merge marked
// stale (two devices embedded different content under one id; the merged
// record keeps the winning content, flagged until re-embedded). It gets the
// record's current value (a conflict.Embedding encoding) and returns the
// new vector; the node then writes conflict.Refresh(value, vector), which
// clears the flag on every device. It runs on a goroutine of the node, one
// call at a time, and may block on the host's model.
type ReembedFunc func(ctx context.Context, collection, key string, value []byte) ([]float32, error)

// reembedQueue bounds the stale vectors waiting for the hook; beyond it
// they stay flagged (conflict.NeedsReembed) for the host to find.
const reembedQueue = 1024

type reembedJob struct{ collection, key string }

// noteStale queues stale vectors among committed records (write lock held).
func (n *Node) noteStale(records []core.Record) {
	if n.cfg.Reembed == nil {
		return
	}
	for _, r := range records {
		if r.Deleted {
			continue
		}
		if _, ok := n.cfg.policy(r.Collection).Resolver.(conflict.VectorMerge); !ok {
			continue
		}
		if stale, err := conflict.NeedsReembed(r.Value); err != nil || !stale {
			continue
		}
		select {
		case n.reembed <- reembedJob{r.Collection, r.Key}:
		default:
			n.log.Warn("re-embed queue full; vector stays flagged", "collection", r.Collection)
		}
	}
}

// reembedLoop calls the host's hook for queued stale vectors until the
// node closes.
func (n *Node) reembedLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-n.reembed:
			if err := n.refresh(ctx, j); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Warn("re-embed failed", "collection", j.collection, "err", err)
			}
		}
	}
}

func (n *Node) refresh(ctx context.Context, j reembedJob) error {
	v, err := n.Get(ctx, j.collection, j.key)
	if err != nil {
		return err
	}
	if stale, err := conflict.NeedsReembed(v); err != nil || !stale {
		return err
	}
	vec, err := n.cfg.Reembed(ctx, j.collection, j.key, v)
	if err != nil {
		return err
	}
	return n.Update(ctx, func(tx *Tx) error {
		cur, err := tx.Get(j.collection, j.key)
		if err != nil {
			return err
		}
		if string(cur) != string(v) {
			return nil // changed meanwhile: a later pass sees the new value
		}
		fresh, err := conflict.Refresh(cur, vec)
		if err != nil {
			return err
		}
		return tx.Put(j.collection, j.key, fresh)
	})
}
