package memstore

import (
	"context"
	"sort"

	"github.com/devicemesh/federation/core"
)

var _ core.ChangeCounter = (*Store)(nil)

// CountChanges implements core.ChangeCounter without copying any value.
func (s *Store) CountChanges(ctx context.Context, origin core.DeviceID, after, upTo uint64) (map[string]core.ChangeTally, error) {
	var out map[string]core.ChangeTally
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return out, err
	}
	l := s.log[origin]
	for i := sort.Search(len(l), func(i int) bool { return l[i].Seq > after }); i < len(l) && l[i].Seq <= upTo; i++ {
		c := &l[i]
		if out == nil {
			out = map[string]core.ChangeTally{}
		}
		t := out[c.Collection]
		t.Changes++
		t.Bytes += uint64(len(c.Collection) + len(c.Key) + len(c.Value))
		out[c.Collection] = t
	}
	return out, nil
}
