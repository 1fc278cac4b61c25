package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// GCStats says what GC did.
type GCStats struct {
	Manifests      int   // manifests kept
	ChunksKept     int   // chunks listed by a kept manifest and stored
	ChunksDeleted  int   // chunks no manifest listed
	BytesDeleted   int64 // their records' sizes
	PacksRewritten int   // packs whose live chunks were copied and the pack deleted
}

// Manifests returns the IDs of the stored manifests.
func (s *Store) Manifests() ([]ID, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "manifests"))
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	out := make([]ID, 0, len(ents))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "manifests", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("list manifests: %w", err)
		}
		if id, ok := s.manifestID(e.Name(), b); ok {
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
	n := s.name(kindManifest, id)
	return id, hex.EncodeToString(n[:]) == name
}

// manifestHeld returns the chunks listed by the pages of t the store
// holds.
func (s *Store) manifestHeld(id ID, t top) ([]ChunkRef, error) {
	var out []ChunkRef
	buf := chunkBuf()
	for _, g := range t.Pages {
		name := s.name(kindChunk, g.ID)
		b, err := s.readRecord(name, buf)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		plain, err := s.open(kindChunk, g.ID, b)
		if err != nil || sha256.Sum256(plain) != g.ID {
			continue // damaged: fetched again, with its chunks
		}
		if out, err = appendPage(out, plain); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", id, err)
		}
	}
	return out, nil
}

// GC deletes every chunk that no stored manifest lists: it forgets them,
// then rewrites each pack that held any (copying its live chunks to the
// active pack) and deletes it. It waits for writes and reads in progress
// and holds them off while it runs.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	var st GCStats
	ids, err := s.Manifests()
	if err != nil {
		return st, err
	}
	live := map[[32]byte]bool{}
	for _, id := range ids {
		t, _, err := s.top(id)
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		st.Manifests++
		for _, g := range t.Pages {
			live[s.name(kindChunk, g.ID)] = true
		}
		// A blob being fetched may lack pages still: the chunks of those
		// are not stored yet either.
		m, err := s.manifestHeld(id, t)
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		for _, c := range m {
			live[s.name(kindChunk, c.ID)] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Every pack but the active one holding garbage is rewritten; so is the
	// active one, after a new pack takes its place.
	dirty := map[uint32]bool{}
	packBytes := map[uint32]int64{}
	for name, l := range s.index {
		packBytes[l.pack] += recordHeader + int64(l.n)
		if live[name] {
			st.ChunksKept++
			continue
		}
		delete(s.index, name)
		st.ChunksDeleted++
		st.BytesDeleted += recordHeader + int64(l.n)
		dirty[l.pack] = true
	}
	// Packs whose size exceeds their indexed records hold dropped chunks.
	for n, f := range s.files {
		fi, err := f.Stat()
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		size := fi.Size()
		if n == s.active {
			size = s.size
		}
		if size > packBytes[n] {
			dirty[n] = true
		}
	}
	if dirty[s.active] {
		if err := s.newPackLocked(s.active + 1); err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
	}
	for n := range dirty {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := s.rewritePackLocked(n); err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		st.PacksRewritten++
	}
	return st, nil
}

// rewritePackLocked copies pack n's indexed records to the active pack and
// deletes pack n. A crash midway leaves both copies; the index keeps one.
// (Records appended meanwhile go to the active pack, never n, so the
// iteration skips them.)
func (s *Store) rewritePackLocked(n uint32) error {
	f := s.files[n]
	buf := chunkBuf()
	for name, l := range s.index {
		if l.pack != n {
			continue
		}
		b := buf[:l.n]
		if _, err := f.ReadAt(b, l.off); err != nil {
			return err
		}
		delete(s.index, name)
		if err := s.appendRecordLocked(name, b); err != nil {
			return err
		}
	}
	_ = f.Close()
	delete(s.files, n)
	return os.Remove(s.packPath(n))
}
