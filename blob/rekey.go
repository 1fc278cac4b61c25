package blob

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/devicemesh/federation/core"
)

// Rekeying moves a store to another key (or from or to none) in two steps,
// so that its owner can switch keys atomically with its own files:
// PrepareRekey writes a re-encrypted copy beside the store, Commit puts it
// in the store's place. Until Commit the store is untouched under the old
// key; a crash after the copy is complete is finished by the next Open
// with the new key (and undone by an Open with the old one).
type Rekeying struct {
	dir, staging string
}

// rekeySuffix names the re-encrypted copy beside the store, oldSuffix the
// store it replaces while the two are swapped.
const (
	rekeySuffix = ".rekey"
	oldSuffix   = ".old"
	// rekeyDone marks a complete copy: every file in it written and synced.
	rekeyDone = "rekey-complete"
	// rekeyCheck is a meta file of the copy that opens only with its key.
	rekeyCheck = "rekey-check"
)

// PrepareRekey writes a copy of the store in dir, sealed with newKey, that
// Commit then puts in its place; oldKey must be the key the store is
// sealed with (core.ErrWrongKey when a manifest or meta file fails to
// open with it, and nothing is written). The copy holds every stored
// manifest, the pages and chunks of each that the store holds, and every
// meta file; chunks that no manifest lists (the leftovers of a fetch never
// completed) are left behind. dir must not be open in a Store meanwhile.
func PrepareRekey(ctx context.Context, dir string, oldKey, newKey []byte) (*Rekeying, error) {
	r := &Rekeying{dir: dir, staging: dir + rekeySuffix}
	if err := os.RemoveAll(r.staging); err != nil {
		return nil, fmt.Errorf("rekey blob store: %w", err)
	}
	if err := r.copy(ctx, oldKey, newKey); err != nil {
		_ = os.RemoveAll(r.staging)
		return nil, fmt.Errorf("rekey blob store: %w", err)
	}
	return r, nil
}

func (r *Rekeying) copy(ctx context.Context, oldKey, newKey []byte) error {
	src, err := Open(r.dir, Options{Key: oldKey})
	if err != nil {
		return err
	}
	defer src.Close()
	if err := src.checkKey(); err != nil {
		return err
	}
	dst, err := Open(r.staging, Options{Key: newKey})
	if err != nil {
		return err
	}
	defer dst.Close()
	ids, err := src.Manifests()
	if err != nil {
		return err
	}
	buf, scratch := chunkBuf(), chunkBuf()
	copyChunk := func(id ID) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := src.readChunk(id, buf)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			return nil // not held: fetched again when needed
		}
		if err != nil {
			return err
		}
		return dst.putChunk(id, b, scratch)
	}
	for _, id := range ids {
		t, plain, err := src.top(id)
		if err != nil {
			return err
		}
		for _, g := range t.Pages {
			if err := copyChunk(g.ID); err != nil {
				return err
			}
		}
		held, err := src.manifestHeld(id, t)
		if err != nil {
			return err
		}
		for _, c := range held {
			if err := copyChunk(c.ID); err != nil {
				return err
			}
		}
		if err := dst.putTop(id, plain); err != nil {
			return err
		}
	}
	metas, err := src.metas()
	if err != nil {
		return err
	}
	for name, plain := range metas {
		if name == rekeyCheck {
			continue
		}
		if err := dst.WriteMeta(name, plain); err != nil {
			return err
		}
	}
	check := make([]byte, 16)
	_, _ = rand.Read(check)
	if err := dst.WriteMeta(rekeyCheck, check); err != nil {
		return err
	}
	dst.Close()
	if err := syncTree(r.staging); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.staging, rekeyDone), nil, 0o600); err != nil {
		return err
	}
	return syncDir(r.staging)
}

// checkKey fails with core.ErrWrongKey when a manifest or meta file of
// the store does not open with its key.
func (s *Store) checkKey() error {
	for _, d := range []string{"manifests", metaDir} {
		ents, err := os.ReadDir(filepath.Join(s.dir, d))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), tmpSuffix) {
				continue
			}
			b, err := os.ReadFile(filepath.Join(s.dir, d, e.Name()))
			if err != nil {
				return err
			}
			ok := false
			if d == metaDir {
				_, _, err = s.openMeta(b)
				ok = err == nil
			} else {
				_, ok = s.manifestID(e.Name(), b)
			}
			if !ok {
				return fmt.Errorf("%w: %s/%s does not open with the store's key", core.ErrWrongKey, d, e.Name())
			}
		}
	}
	return nil
}

// Commit puts the re-encrypted copy in the store's place. Call it once the
// owner's own files are under the new key: from then on the store opens
// with the new key only. A crash inside Commit is finished by the next
// Open.
func (r *Rekeying) Commit() error {
	if err := swapIn(r.dir); err != nil {
		return fmt.Errorf("rekey blob store: %w", err)
	}
	return nil
}

// Abort drops the copy; the store stays under the old key.
func (r *Rekeying) Abort() { _ = os.RemoveAll(r.staging) }

// swapIn replaces dir with its complete re-encrypted copy.
func swapIn(dir string) error {
	staging, old := dir+rekeySuffix, dir+oldSuffix
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(staging, dir); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, rekeyDone)); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// recoverRekey finishes or undoes a rekey a crash interrupted, before the
// store in dir opens with key: a complete copy that opens with key
// replaces the store (the owner switched keys); any other copy is
// dropped.
func recoverRekey(dir string, key []byte) error {
	staging, old := dir+rekeySuffix, dir+oldSuffix
	switch _, err := os.Stat(staging); {
	case err == nil:
		if _, err := os.Stat(filepath.Join(staging, rekeyDone)); err == nil && opensWith(staging, key) {
			return swapIn(dir)
		}
		if err := os.RemoveAll(staging); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		// Crashed between the two renames of a swap whose copy was
		// then dropped: the old store is all there is.
		if _, err := os.Stat(old); err == nil {
			return os.Rename(old, dir)
		}
		return nil
	}
	return os.RemoveAll(old)
}

// opensWith reports whether the copy in dir is sealed with key.
func opensWith(dir string, key []byte) bool {
	s := &Store{dir: dir}
	if err := s.setKey(key); err != nil {
		return false
	}
	_, err := s.ReadMeta(rekeyCheck)
	return err == nil
}

// syncTree fsyncs every file and directory under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return syncDir(p) // a file or a directory alike
	})
}

// syncDir fsyncs the file or directory at dir.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
