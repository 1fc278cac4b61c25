package blob

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// KeySize is the size of Options.Key.
const KeySize = 32

// Options configures a Store.
type Options struct {
	// Key is the node's at-rest key (32 bytes); the store derives its own
	// keys from it. nil stores chunks and manifests in plain.
	Key []byte
}

// Store is a content-addressed chunk store in one directory. Its methods
// are safe for concurrent use; GC waits for writes in progress.
type Store struct {
	dir     string
	aead    cipher.AEAD // nil: plain
	nameKey []byte      // nil: plain names

	// gc is held shared by every write that adds chunks before the
	// manifest listing them (Put, a fetch) and by chunk reads,
	// exclusively by GC.
	gc sync.RWMutex
	// tmpSeq numbers the temporary files (see writeFile).
	tmpSeq atomic.Uint64

	mu    sync.Mutex // guards the fields below
	index map[[32]byte]loc
	files map[uint32]*os.File // open packs
	// active is the pack chunks are appended to, size its length.
	active uint32
	size   int64
	closed bool
}

// Open opens (creating it if need be) the store in dir: it reads every
// pack's record headers to build the chunk index, cutting a record that a
// crash left torn at a pack's end. A rekey a crash interrupted is first
// finished or undone (see Rekeying). Close it when done.
func Open(dir string, opts Options) (*Store, error) {
	s := &Store{dir: dir, index: map[[32]byte]loc{}, files: map[uint32]*os.File{}}
	if err := s.setKey(opts.Key); err != nil {
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	if err := recoverRekey(dir, opts.Key); err != nil {
		return nil, fmt.Errorf("open blob store: finish an interrupted rekey: %w", err)
	}
	for _, d := range []string{"packs", "manifests", metaDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("open blob store: %w", err)
		}
	}
	// Leftovers of manifest and meta writes a crash interrupted.
	for _, d := range []string{"manifests", metaDir} {
		if ents, err := os.ReadDir(filepath.Join(dir, d)); err == nil {
			for _, e := range ents {
				if strings.HasSuffix(e.Name(), tmpSuffix) {
					_ = os.Remove(filepath.Join(dir, d, e.Name()))
				}
			}
		}
	}
	if err := s.loadPacks(); err != nil {
		s.Close()
		return nil, fmt.Errorf("open blob store: %w", err)
	}
	return s, nil
}

// setKey derives the store's keys from key (nil: plain).
func (s *Store) setKey(key []byte) error {
	if key == nil {
		return nil
	}
	if len(key) != KeySize {
		return fmt.Errorf("key has %d bytes, want %d", len(key), KeySize)
	}
	enc, err := hkdf.Key(sha256.New, key, nil, "federation blob store v1: chunk encryption", 32)
	if err != nil {
		return err
	}
	if s.nameKey, err = hkdf.Key(sha256.New, key, nil, "federation blob store v1: chunk names", 32); err != nil {
		return err
	}
	blk, err := aes.NewCipher(enc)
	if err != nil {
		return err
	}
	s.aead, err = cipher.NewGCM(blk)
	return err
}

// Close closes the store's files. Later calls fail with ErrClosed-like
// errors from the file system; Close is idempotent.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for n, f := range s.files {
		_ = f.Close()
		delete(s.files, n)
	}
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// kind prefixes an ID in names and associated data.
type kind string

const (
	kindChunk    kind = "chunk:"
	kindManifest kind = "manifest:"
)

// name is the name of an object: HMAC of its ID with a key, its ID
// without.
func (s *Store) name(k kind, id ID) [32]byte {
	if s.nameKey == nil {
		return id
	}
	h := hmac.New(sha256.New, s.nameKey)
	h.Write([]byte(k))
	h.Write(id[:])
	return [32]byte(h.Sum(nil))
}

func (s *Store) manifestPath(id ID) string {
	n := s.name(kindManifest, id)
	return filepath.Join(s.dir, "manifests", hex.EncodeToString(n[:]))
}

// seal encrypts plain for (k, id), appending to dst.
func (s *Store) seal(dst []byte, k kind, id ID, plain []byte) ([]byte, error) {
	if s.aead == nil {
		return append(dst, plain...), nil
	}
	n := s.aead.NonceSize()
	dst = append(dst, make([]byte, n)...)
	nonce := dst[len(dst)-n:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return s.aead.Seal(dst, nonce, plain, ad(k, id)), nil
}

// open decrypts sealed bytes in place.
func (s *Store) open(k kind, id ID, b []byte) ([]byte, error) {
	if s.aead == nil {
		return b, nil
	}
	n := s.aead.NonceSize()
	if len(b) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: short record", ErrCorrupt)
	}
	p, err := s.aead.Open(b[n:n], b[:n], b[n:], ad(k, id))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return p, nil
}

func ad(k kind, id ID) []byte { return append([]byte(k), id[:]...) }

// writeFile writes b whole to path: to a temporary file beside it, then
// renamed.
func (s *Store) writeFile(path string, b []byte) error {
	tmp := path + "." + strconv.FormatUint(s.tmpSeq.Add(1), 10) + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// tmpSuffix ends the names of files being written.
const tmpSuffix = ".tmp"

// HasChunk reports whether the store holds the chunk (its bytes are
// checked when read).
func (s *Store) HasChunk(id ID) bool {
	n := s.name(kindChunk, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.index[n]
	return ok
}

// chunkBuf is a scratch buffer for one chunk and its encryption overhead.
func chunkBuf() []byte { return make([]byte, 0, MaxChunk+64) }

// ReadChunk reads and verifies the chunk id into buf (reused when large
// enough) and returns its bytes. A chunk that fails verification is
// dropped from the store and reported as ErrCorrupt; a missing one as
// ErrNotFound.
func (s *Store) ReadChunk(id ID, buf []byte) ([]byte, error) {
	s.gc.RLock() // GC moves chunks between packs
	defer s.gc.RUnlock()
	return s.readChunk(id, buf)
}

// readChunk is ReadChunk for callers holding s.gc.
func (s *Store) readChunk(id ID, buf []byte) ([]byte, error) {
	name := s.name(kindChunk, id)
	b, err := s.readRecord(name, buf)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	plain, err := s.open(kindChunk, id, b)
	// With a key the AEAD is the check: a chunk is sealed only once its
	// hash matched, with its ID as associated data.
	if err == nil && s.aead == nil && sha256.Sum256(plain) != id {
		err = fmt.Errorf("%w: hash mismatch", ErrCorrupt)
	}
	if err != nil {
		s.drop(name) // counts as absent: fetched again
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	return plain, nil
}

// WriteChunk verifies that data hashes to id and stores it, unless the
// store holds it already. scratch (may be nil) is reused for the
// encryption. A mismatch is ErrCorrupt.
func (s *Store) WriteChunk(id ID, data, scratch []byte) error {
	if len(data) == 0 || len(data) > MaxChunk {
		return fmt.Errorf("chunk %s: %w: %d bytes", id, ErrCorrupt, len(data))
	}
	if sha256.Sum256(data) != id {
		return fmt.Errorf("chunk %s: %w: hash mismatch", id, ErrCorrupt)
	}
	return s.putChunk(id, data, scratch)
}

// putChunk stores a verified chunk unless present.
func (s *Store) putChunk(id ID, data, scratch []byte) error {
	if s.HasChunk(id) {
		return nil
	}
	b, err := s.seal(scratch[:0], kindChunk, id, data)
	if err != nil {
		return err
	}
	if err := s.appendRecord(s.name(kindChunk, id), b); err != nil {
		return fmt.Errorf("write chunk: %w", err)
	}
	return nil
}

// PutManifest stores m: its pages as chunks, then its top.
func (s *Store) PutManifest(m Manifest) error {
	t, pages := m.encode()
	scratch := chunkBuf()
	for _, g := range pages {
		if err := s.putChunk(sha256.Sum256(g), g, scratch); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
	}
	return s.putTop(sha256.Sum256(t), t)
}

// putTop stores a manifest's top encoding (a fetch stores it first).
func (s *Store) putTop(id ID, t []byte) error {
	// The ID is the plain bytes' hash, checked on read: the associated data
	// need not carry it, so Manifests can list the store without it.
	b, err := s.seal(nil, kindManifest, ID{}, t)
	if err != nil {
		return err
	}
	if err := s.writeFile(s.manifestPath(id), b); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// top returns the stored top of blob id, decoded and encoded, or
// ErrNotFound.
func (s *Store) top(id ID) (top, []byte, error) {
	b, err := os.ReadFile(s.manifestPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return top{}, nil, fmt.Errorf("manifest %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return top{}, nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	plain, err := s.open(kindManifest, ID{}, b)
	if err == nil && sha256.Sum256(plain) != id {
		err = fmt.Errorf("%w: manifest hash mismatch", ErrCorrupt)
	}
	if err != nil {
		return top{}, nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	t, err := decodeTop(plain)
	return t, plain, err
}

// Manifest returns the stored manifest of blob id: ErrNotFound when its
// top is not stored, ErrIncomplete when one of its pages is not.
func (s *Store) Manifest(id ID) (Manifest, error) {
	s.gc.RLock()
	defer s.gc.RUnlock()
	return s.manifest(id)
}

// manifest is Manifest for callers holding s.gc.
func (s *Store) manifest(id ID) (Manifest, error) {
	t, _, err := s.top(id)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Size: t.Size, Digest: t.Digest}
	buf := chunkBuf()
	for _, g := range t.Pages {
		b, err := s.readChunk(g.ID, buf)
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
			return Manifest{}, fmt.Errorf("manifest %s: %w: %w", id, ErrIncomplete, err)
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("manifest %s: %w", id, err)
		}
		if len(b) != int(g.Entries)*entrySize {
			return Manifest{}, fmt.Errorf("manifest %s: %w: page of %d bytes", id, ErrCorrupt, len(b))
		}
		if m.Chunks, err = appendPage(m.Chunks, b); err != nil {
			return Manifest{}, fmt.Errorf("manifest %s: %w", id, err)
		}
	}
	if err := m.check(); err != nil {
		return Manifest{}, fmt.Errorf("manifest %s: %w", id, err)
	}
	return m, nil
}

// DeleteManifest drops blob id's manifest; GC then deletes the chunks no
// other manifest lists. Deleting a missing manifest is not an error.
func (s *Store) DeleteManifest(id ID) error {
	if err := os.Remove(s.manifestPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete manifest: %w", err)
	}
	return nil
}

// Missing returns the chunks of m the store lacks, each once, in order, and
// their total size.
func (s *Store) Missing(m Manifest) ([]ChunkRef, int64) {
	seen := make(map[ID]bool, len(m.Chunks))
	var out []ChunkRef
	var n int64
	for _, c := range m.Chunks {
		if seen[c.ID] {
			continue
		}
		seen[c.ID] = true
		if !s.HasChunk(c.ID) {
			out = append(out, c)
			n += int64(c.Size)
		}
	}
	return out, n
}

// Complete reports whether every chunk of blob id is stored.
func (s *Store) Complete(id ID) (bool, error) {
	m, err := s.Manifest(id)
	if err != nil {
		return false, err
	}
	miss, _ := s.Missing(m)
	return len(miss) == 0, nil
}
