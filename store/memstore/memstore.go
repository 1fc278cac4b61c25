// Package memstore is the in-memory Store: the same behaviour as the libSQL
// store with no disk, for tests and host test harnesses. Its contents vanish
// with the process.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/devicemesh/federation/core"
)

var _ core.Store = (*Store)(nil)

// Store is an in-memory core.Store. It is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	closed  bool
	colls   map[string]*collection
	log     map[core.DeviceID][]core.Change // ascending Seq
	vv      core.VersionVector
	meta    map[string][]byte
	nchange int64
}

type collection struct {
	recs  map[string]core.Record
	keys  []string // sorted; rebuilt lazily when dirty
	dirty bool
}

// New returns an empty store.
func New() *Store {
	return &Store{
		colls: map[string]*collection{},
		log:   map[core.DeviceID][]core.Change{},
		vv:    core.VersionVector{},
		meta:  map[string][]byte{},
	}
}

func (s *Store) check(ctx context.Context) error {
	if s.closed {
		return fmt.Errorf("memstore: %w", core.ErrClosed)
	}
	return ctx.Err()
}

// Get implements core.RecordReader.
func (s *Store) Get(ctx context.Context, coll, key string) (core.Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return core.Record{}, err
	}
	c := s.colls[coll]
	if c == nil {
		return core.Record{}, fmt.Errorf("get %s/%q: %w", coll, key, core.ErrNotFound)
	}
	r, ok := c.recs[key]
	if !ok {
		return core.Record{}, fmt.Errorf("get %s/%q: %w", coll, key, core.ErrNotFound)
	}
	return cloneRecord(r), nil
}

// Collections implements core.RecordReader.
func (s *Store) Collections(ctx context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(s.colls))
	for name, c := range s.colls {
		if len(c.recs) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Scan implements core.RecordReader. It copies the matching records before
// calling fn, so fn may take its time without holding the store.
func (s *Store) Scan(ctx context.Context, coll string, r core.KeyRange, fn func(core.Record) error) error {
	s.mu.Lock()
	if err := s.check(ctx); err != nil {
		s.mu.Unlock()
		return err
	}
	var out []core.Record
	if c := s.colls[coll]; c != nil {
		if c.dirty {
			c.keys = c.keys[:0]
			for k := range c.recs {
				c.keys = append(c.keys, k)
			}
			sort.Strings(c.keys)
			c.dirty = false
		}
		start := max(r.Start, r.Prefix)
		i := sort.SearchStrings(c.keys, start)
		for ; i < len(c.keys); i++ {
			k := c.keys[i]
			if r.End != "" && k >= r.End || !strings.HasPrefix(k, r.Prefix) {
				break // keys are sorted: past the range or past the prefix block
			}
			rec := c.recs[k]
			if rec.Deleted && !r.IncludeDeleted {
				continue
			}
			out = append(out, cloneRecord(rec))
			if r.Limit > 0 && len(out) == r.Limit {
				break
			}
		}
	}
	s.mu.Unlock()
	for _, rec := range out {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// VersionVector implements core.Changelog.
func (s *Store) VersionVector(ctx context.Context) (core.VersionVector, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.vv.Clone(), nil
}

// Changes implements core.Changelog.
func (s *Store) Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	s.mu.RLock()
	if err := s.check(ctx); err != nil {
		s.mu.RUnlock()
		return err
	}
	l := s.log[origin]
	i := sort.Search(len(l), func(i int) bool { return l[i].Seq > after })
	end := len(l)
	if limit > 0 && i+limit < end {
		end = i + limit
	}
	out := make([]core.Change, 0, end-i)
	for _, c := range l[i:end] {
		c.Record = cloneRecord(c.Record)
		out = append(out, c)
	}
	s.mu.RUnlock()
	for _, c := range out {
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

// Truncate implements core.Changelog.
func (s *Store) Truncate(ctx context.Context, acked core.VersionVector) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var n int64
	for origin, l := range s.log {
		upTo := acked[origin]
		i := sort.Search(len(l), func(i int) bool { return l[i].Seq > upTo })
		if i > 0 {
			n += int64(i)
			s.log[origin] = slices.Clone(l[i:])
		}
	}
	s.nchange -= n
	return n, nil
}

// Commit implements core.Store.
func (s *Store) Commit(ctx context.Context, b core.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, r := range b.Records {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	for d := range b.Advance {
		if d.IsZero() {
			return fmt.Errorf("commit: %w: advance of the zero device", core.ErrInvalidArgument)
		}
	}
	// Validate the whole batch before touching anything: Commit is atomic.
	next := map[core.DeviceID]uint64{}
	fresh := make([]bool, len(b.Changes))
	for i, c := range b.Changes {
		if c.Origin.IsZero() || c.Seq == 0 {
			return fmt.Errorf("commit: %w: change without origin or sequence", core.ErrInvalidArgument)
		}
		have, ok := next[c.Origin]
		if !ok {
			have = s.vv[c.Origin]
		}
		switch {
		case c.Seq <= have:
			continue // already logged: replay is a no-op
		case c.Seq != have+1:
			return fmt.Errorf("commit: %w: change %d of %s leaves a gap after %d", core.ErrInvalidArgument, c.Seq, c.Origin.Short(), have)
		}
		next[c.Origin] = c.Seq
		fresh[i] = true
	}
	// Advance raises only what neither the store nor the batch holds.
	raise := core.VersionVector{}
	for d, seq := range b.Advance {
		if seq > max(s.vv[d], next[d]) {
			raise[d] = seq
		}
	}
	if len(next) == 0 && len(raise) == 0 && (len(b.Changes) > 0 || len(b.Records) == 0) {
		// Nothing new, or a replay whose records may be older than what
		// was written since: replaying changes nothing.
		return nil
	}
	for i, c := range b.Changes {
		if !fresh[i] {
			continue
		}
		c.Record = cloneRecord(c.Record)
		s.log[c.Origin] = append(s.log[c.Origin], c)
		s.nchange++
	}
	for d, seq := range next {
		s.vv[d] = seq
	}
	// The log keeps what it holds: it just has no entry for the sequence
	// numbers skipped, so Changes shows the jump (as the libSQL store does).
	for d, seq := range raise {
		s.vv[d] = seq
	}
	for _, r := range b.Records {
		c := s.colls[r.Collection]
		if c == nil {
			c = &collection{recs: map[string]core.Record{}}
			s.colls[r.Collection] = c
		}
		if _, ok := c.recs[r.Key]; !ok {
			c.dirty = true
		}
		c.recs[r.Key] = cloneRecord(r)
	}
	return nil
}

// Meta implements core.Store.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	v, ok := s.meta[key]
	if !ok {
		return nil, fmt.Errorf("meta %q: %w", key, core.ErrNotFound)
	}
	return slices.Clone(v), nil
}

// SetMeta implements core.Store.
func (s *Store) SetMeta(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	s.meta[key] = slices.Clone(value)
	return nil
}

// Stats implements core.Store.
func (s *Store) Stats(ctx context.Context) (core.StoreStats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return core.StoreStats{}, err
	}
	st := core.StoreStats{Changes: s.nchange}
	for _, c := range s.colls {
		for _, r := range c.recs {
			if r.Deleted {
				st.Tombstones++
			} else {
				st.Records++
			}
		}
	}
	return st, nil
}

// Close implements core.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func cloneRecord(r core.Record) core.Record {
	r.Value = slices.Clone(r.Value)
	r.Context = r.Context.Clone()
	return r
}
