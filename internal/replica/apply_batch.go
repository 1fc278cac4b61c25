package replica

import (
	"context"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// batchGetter is implemented by stores that can look up many keys of one
// collection at once (both stores of this module do). Applying a peer's
// changes uses it to read the current versions of a whole batch in a few
// queries instead of one per change; stores without it are read key by key.
type batchGetter interface {
	// GetMany returns the current versions (tombstones included) of those
	// keys of coll that exist, keyed by key; absent keys are missing.
	GetMany(ctx context.Context, coll string, keys []string) (map[string]core.Record, error)
}

// currentVersions holds the versions a batch of remote changes merges
// into, read before the merge.
type currentVersions struct {
	recs    map[txKey]core.Record
	fetched bool // false: the store has no GetMany; read with Get
}

// fetchCurrent reads the current versions of every key changes write, when
// the store can do so in bulk. Called with writeMu held, so they stay
// current until the batch is committed.
func (n *Replica) fetchCurrent(ctx context.Context, changes []core.Change) (currentVersions, error) {
	bg, ok := n.store.(batchGetter)
	if !ok {
		return currentVersions{}, nil
	}
	byColl := map[string][]string{}
	seen := map[txKey]struct{}{}
	n.trees.mu.Lock()
	for _, c := range changes {
		// The Merkle tree of a synced collection names every key the
		// store holds (tombstones included), so a key it lacks needs
		// no query: a first sync reads nothing back.
		if n.policy(c.Collection).Syncs() {
			if t := n.trees.m[c.Collection]; t == nil || !t.Contains(c.Key) {
				continue
			}
		}
		k := txKey{c.Collection, c.Key}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		byColl[c.Collection] = append(byColl[c.Collection], c.Key)
	}
	n.trees.mu.Unlock()
	cv := currentVersions{recs: make(map[txKey]core.Record, len(seen)), fetched: true}
	for coll, keys := range byColl {
		m, err := bg.GetMany(ctx, coll, keys)
		if err != nil {
			return cv, fmt.Errorf("apply: %w", err)
		}
		for k, r := range m {
			cv.recs[txKey{coll, k}] = r
		}
	}
	return cv, nil
}

// current returns the stored version of (coll, key), or nil when there is
// none.
func (n *Replica) current(ctx context.Context, cv currentVersions, coll, key string) (*core.Record, error) {
	if cv.fetched {
		if _, ok := cv.recs[txKey{coll, key}]; !ok {
			return nil, nil // no copy escapes for the keys the store lacks
		}
		r := cv.recs[txKey{coll, key}]
		return &r, nil
	}
	r, err := n.store.Get(ctx, coll, key)
	switch {
	case err == nil:
		return &r, nil
	case errors.Is(err, core.ErrNotFound):
		return nil, nil
	default:
		return nil, fmt.Errorf("apply: %w", err)
	}
}
