package memstore

import (
	"context"
	"sort"

	"github.com/devicemesh/federation/core"
)

var _ core.ChangeCounter = (*Store)(nil)

// CountChanges implements core.ChangeCounter without copying any value.
func (s *Store) CountChanges(ctx context.Context, origin core.DeviceID, after, upTo uint64) (core.ChangeCount, error) {
	var out core.ChangeCount
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return out, err
	}
	l := s.log[origin]
	for i := sort.Search(len(l), func(i int) bool { return l[i].Seq > after }); i < len(l) && l[i].Seq <= upTo; i++ {
		c := &l[i]
		if out.Collections == nil {
			out.Collections = map[string]core.ChangeTally{}
		}
		t := out.Collections[c.Collection]
		t.Changes++
		t.Bytes += uint64(len(c.Collection) + len(c.Key) + len(c.Value))
		out.Collections[c.Collection] = t
		out.Last = c.Seq
	}
	return out, nil
}
