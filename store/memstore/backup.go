package memstore

import (
	"cmp"
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"slices"

	"github.com/devicemesh/federation/core"
)

var _ core.BackupStore = (*Store)(nil)

// snapshot is the content of a Backup stream (encoding/gob). The format is
// private to this package and version: only Restore reads it.
type snapshot struct {
	Version int
	Records []core.Record
	Log     []core.Change
	VV      core.VersionVector
	Meta    map[string][]byte
}

const snapshotVersion = 1

// Backup implements core.BackupStore: it copies the store's content under
// its lock (a consistent instant), then encodes the copy to w without
// holding it.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	s.mu.RLock()
	if err := s.check(ctx); err != nil {
		s.mu.RUnlock()
		return err
	}
	snap := snapshot{Version: snapshotVersion, VV: s.vv.Clone(), Meta: map[string][]byte{}}
	for _, c := range s.colls {
		for _, r := range c.recs {
			snap.Records = append(snap.Records, cloneRecord(r))
		}
	}
	for _, l := range s.log {
		for _, c := range l {
			c.Record = cloneRecord(c.Record)
			snap.Log = append(snap.Log, c)
		}
	}
	for k, v := range s.meta {
		snap.Meta[k] = slices.Clone(v)
	}
	s.mu.RUnlock()
	if err := gob.NewEncoder(w).Encode(snap); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Restore returns a store holding what a Backup wrote to r.
func Restore(r io.Reader) (*Store, error) {
	var snap snapshot
	if err := gob.NewDecoder(r).Decode(&snap); err != nil {
		return nil, fmt.Errorf("restore: %w: %w", core.ErrCorrupt, err)
	}
	if snap.Version != snapshotVersion {
		return nil, fmt.Errorf("restore: %w: snapshot version %d", core.ErrCorrupt, snap.Version)
	}
	s := New()
	for _, rec := range snap.Records {
		c := s.colls[rec.Collection]
		if c == nil {
			c = &collection{recs: map[string]core.Record{}}
			s.colls[rec.Collection] = c
		}
		if !rec.Deleted && rec.Value == nil {
			rec.Value = []byte{} // gob does not tell an empty value from none
		}
		c.recs[rec.Key] = rec
		c.dirty = true
	}
	for _, c := range snap.Log {
		s.log[c.Origin] = append(s.log[c.Origin], c)
		s.nchange++
	}
	for _, l := range s.log {
		slices.SortFunc(l, func(a, b core.Change) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	if snap.VV != nil {
		s.vv = snap.VV
	}
	for k, v := range snap.Meta {
		s.meta[k] = v
	}
	return s, nil
}
