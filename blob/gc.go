package blob

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
)

// GCStats says what GC did.
type GCStats struct {
	Manifests     int   // manifests kept
	ChunksKept    int   // chunks listed by a kept manifest
	ChunksDeleted int   // chunks no manifest listed
	BytesDeleted  int64 // their file sizes
}

// Manifests returns the IDs of the stored manifests.
func (s *Store) Manifests() ([]ID, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "manifests"))
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	out := make([]ID, 0, len(ents))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, "manifests", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list manifests: %w", err)
		}
		id, ok := s.manifestID(e.Name(), b)
		if ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// manifestID recovers the ID of the manifest stored as file name with
// bytes b: its plain bytes' hash, which must also give the file's name.
func (s *Store) manifestID(name string, b []byte) (ID, bool) {
	plain, err := s.open(kindManifest, ID{}, b)
	if err != nil {
		return ID{}, false
	}
	id := ID(sha256.Sum256(plain))
	return id, s.name(kindManifest, id) == name
}

// GC deletes every chunk that no stored manifest lists. It waits for writes
// in progress (Put, fetches) and holds them off while it runs.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	var st GCStats
	ids, err := s.Manifests()
	if err != nil {
		return st, err
	}
	live := map[string]bool{}
	for _, id := range ids {
		m, err := s.Manifest(id)
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		st.Manifests++
		for _, c := range m.Chunks {
			live[s.name(kindChunk, c.ID)] = true
		}
	}
	st.ChunksKept = len(live)
	root := filepath.Join(s.dir, "chunks")
	dirs, err := os.ReadDir(root)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		files, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		for _, f := range files {
			if live[f.Name()] {
				continue
			}
			if info, err := f.Info(); err == nil {
				st.BytesDeleted += info.Size()
			}
			if err := os.Remove(filepath.Join(root, d.Name(), f.Name())); err != nil {
				return st, fmt.Errorf("gc: %w", err)
			}
			st.ChunksDeleted++
		}
	}
	return st, nil
}
