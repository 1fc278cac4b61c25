package memstore

import (
	"context"

	"github.com/devicemesh/federation/core"
)

var _ core.ManyGetter = (*Store)(nil)

// GetMany implements core.ManyGetter: it returns the current versions (tombstones included) of those keys
// of coll that exist, keyed by key; absent keys are missing from the map.
// The returned records belong to the caller.
func (s *Store) GetMany(ctx context.Context, coll string, keys []string) (map[string]core.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]core.Record, len(keys))
	c := s.colls[coll]
	if c == nil {
		return out, nil
	}
	for _, k := range keys {
		if r, ok := c.recs[k]; ok {
			out[k] = cloneRecord(r)
		}
	}
	return out, nil
}
