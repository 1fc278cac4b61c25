package audit

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is the in-memory Backend, for tests and hosts without disk. It is
// safe for concurrent use.
type Memory struct {
	mu      sync.RWMutex
	entries []Entry // in insertion order; Scan sorts by seq as a table would
	taken   map[uint64]bool
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty in-memory backend.
func NewMemory() *Memory { return &Memory{taken: map[uint64]bool{}} }

func cloneEntry(e Entry) Entry {
	e.Detail = slices.Clone(e.Detail)
	return e
}

// Last implements Backend.
func (m *Memory) Last(ctx context.Context) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var last Entry
	found := false
	for _, e := range m.entries {
		if !found || e.Seq > last.Seq {
			last, found = e, true
		}
	}
	return cloneEntry(last), found, nil
}

// Insert implements Backend.
func (m *Memory) Insert(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.taken[e.Seq] {
		return fmt.Errorf("%w: %d", errConflict, e.Seq)
	}
	m.taken[e.Seq] = true
	m.entries = append(m.entries, cloneEntry(e))
	return nil
}

// Scan implements Backend.
func (m *Memory) Scan(ctx context.Context, fn func(Entry) error) error {
	for _, e := range m.sorted() {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Query implements Backend.
func (m *Memory) Query(ctx context.Context, f Filter) ([]Entry, error) {
	var out []Entry
	for _, e := range m.sorted() {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		if f.Match(&e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// sorted returns a copy of the entries ordered by sequence number, as a
// table keyed by seq would return them.
func (m *Memory) sorted() []Entry {
	m.mu.RLock()
	es := make([]Entry, len(m.entries))
	for i, e := range m.entries {
		es[i] = cloneEntry(e)
	}
	m.mu.RUnlock()
	slices.SortStableFunc(es, func(a, b Entry) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return es
}
