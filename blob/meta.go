package blob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// kindMeta prefixes the names and associated data of meta files.
const kindMeta kind = "meta:"

// metaDir holds the store user's small files (see WriteMeta).
const metaDir = "meta"

// metaPath is where meta file name lives: under the HMAC of its name with
// a key, so that the file system shows no name either.
func (s *Store) metaPath(name string) string {
	n := s.name(kindMeta, ID(sha256.Sum256([]byte(name))))
	return filepath.Join(s.dir, metaDir, hex.EncodeToString(n[:]))
}

// WriteMeta stores plain as the small file name beside the blobs (a list
// the store's user keeps, such as the collections holding blob
// references), sealed with the store's key like chunks and manifests
// (plain in a store without one). It replaces any earlier content whole:
// a crash leaves the old content or the new, never a mix. Rekey carries
// meta files over to the new key.
func (s *Store) WriteMeta(name string, plain []byte) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("write meta %q: want a name without NUL", name)
	}
	// The sealed bytes carry the name, so that Rekey can list the meta
	// files without knowing their names; ReadMeta checks it.
	body := append(append([]byte(name), 0), plain...)
	b, err := s.seal(nil, kindMeta, ID{}, body)
	if err != nil {
		return fmt.Errorf("write meta %q: %w", name, err)
	}
	if err := s.writeFile(s.metaPath(name), b); err != nil {
		return fmt.Errorf("write meta %q: %w", name, err)
	}
	return nil
}

// ReadMeta returns what WriteMeta stored as name: ErrNotFound when nothing
// is, ErrCorrupt when the file fails to open with the store's key.
func (s *Store) ReadMeta(name string) ([]byte, error) {
	b, err := os.ReadFile(s.metaPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read meta %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read meta %q: %w", name, err)
	}
	got, plain, err := s.openMeta(b)
	if err == nil && got != name {
		err = fmt.Errorf("%w: meta file of another name", ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("read meta %q: %w", name, err)
	}
	return plain, nil
}

// openMeta opens a meta file's bytes into its name and content.
func (s *Store) openMeta(b []byte) (string, []byte, error) {
	body, err := s.open(kindMeta, ID{}, b)
	if err != nil {
		return "", nil, err
	}
	i := bytes.IndexByte(body, 0)
	if i <= 0 {
		return "", nil, fmt.Errorf("%w: meta file without a name", ErrCorrupt)
	}
	return string(body[:i]), body[i+1:], nil
}

// metas returns every meta file the store holds, by name; a file that
// fails to open, or sits under another name's path, is left out.
func (s *Store) metas() (map[string][]byte, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, metaDir))
	if err != nil {
		return nil, fmt.Errorf("list meta files: %w", err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		p := filepath.Join(s.dir, metaDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("list meta files: %w", err)
		}
		if name, plain, err := s.openMeta(b); err == nil && s.metaPath(name) == p {
			out[name] = plain
		}
	}
	return out, nil
}
