package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randReader returns n pseudo-random bytes from seed, generated as read.
func randReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(&prng{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, n)
}

type prng struct{ r *rand.Rand }

func (p *prng) Read(b []byte) (int, error) {
	for i := 0; i < len(b); i += 8 {
		v := p.r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return len(b), nil
}

func testKey() []byte { return bytes.Repeat([]byte{7}, KeySize) }

func openStore(t *testing.T, key []byte) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// chunkFiles counts the chunks s holds.
func chunkFiles(t *testing.T, s *Store) int {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// ids returns the IDs of m's chunks and manifest pages: what the store
// keeps for it.
func ids(m Manifest) map[ID]bool {
	out := map[ID]bool{}
	for _, c := range m.Chunks {
		out[c.ID] = true
	}
	_, pages := m.encode()
	for _, p := range pages {
		out[sha256.Sum256(p)] = true
	}
	return out
}

// packBytes is the size of s's packs on disk.
func packBytes(t *testing.T, s *Store) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(s.Dir(), "packs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readAll(t *testing.T, s *Store, id ID) []byte {
	t.Helper()
	r, _, err := s.Open(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPutOpenRoundTrip(t *testing.T) {
	for _, key := range [][]byte{nil, testKey()} {
		s := openStore(t, key)
		data, _ := io.ReadAll(randReader(1, 3<<20+17))
		m, err := s.Put(context.Background(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(len(data)) || len(m.Chunks) < 3<<20/MaxChunk {
			t.Fatalf("manifest: size %d, %d chunks", m.Size, len(m.Chunks))
		}
		for _, c := range m.Chunks[:len(m.Chunks)-1] {
			if c.Size < MinChunk || c.Size > MaxChunk {
				t.Fatalf("chunk of %d bytes", c.Size)
			}
		}
		if got := readAll(t, s, m.ID()); !bytes.Equal(got, data) {
			t.Fatal("content read back differs")
		}
		m2, err := s.Manifest(m.ID())
		if err != nil || m2.ID() != m.ID() {
			t.Fatalf("manifest read back: %v", err)
		}
	}
}

func TestIdenticalChunksStoredOnce(t *testing.T) {
	s := openStore(t, testKey())
	ctx := context.Background()
	one, _ := io.ReadAll(randReader(2, 1<<20))
	m1, err := s.Put(ctx, bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	n1 := chunkFiles(t, s)
	if n1 != len(ids(m1)) {
		t.Fatalf("%d records for %d chunks and pages", n1, len(ids(m1)))
	}
	// The same content again, and the content twice in one blob: the
	// second copy's chunks (but for the seam) are the first's.
	if _, err := s.Put(ctx, bytes.NewReader(one)); err != nil {
		t.Fatal(err)
	}
	if n := chunkFiles(t, s); n != n1 {
		t.Fatalf("same blob twice: %d chunk files, want %d", n, n1)
	}
	m2, err := s.Put(ctx, io.MultiReader(bytes.NewReader(one), bytes.NewReader(one)))
	if err != nil {
		t.Fatal(err)
	}
	_, pages := m2.encode()
	if n := chunkFiles(t, s); n > n1+3+len(pages) {
		t.Fatalf("blob of the content twice added %d records, want at most 3 and its %d pages", n-n1, len(pages))
	}
	if got := readAll(t, s, m2.ID()); !bytes.Equal(got, append(append([]byte{}, one...), one...)) {
		t.Fatal("doubled content read back differs")
	}
}

func TestGCDeletesUnreferencedChunks(t *testing.T) {
	s := openStore(t, testKey())
	ctx := context.Background()
	a, _ := io.ReadAll(randReader(3, 1<<20))
	b := append(append([]byte{}, a[:512<<10]...), make([]byte, 512<<10)...) // shares a's first half
	ma, err := s.Put(ctx, bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	mb, err := s.Put(ctx, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	before, beforeBytes := chunkFiles(t, s), packBytes(t, s)
	st, err := s.GC(ctx)
	if err != nil || st.ChunksDeleted != 0 || st.Manifests != 2 {
		t.Fatalf("gc with both blobs: %+v %v", st, err)
	}
	if err := s.DeleteManifest(ma.ID()); err != nil {
		t.Fatal(err)
	}
	st, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	liveB := ids(mb)
	onlyA := 0
	for id := range ids(ma) {
		if !liveB[id] {
			onlyA++
		}
	}
	if onlyA == 0 || st.ChunksDeleted != onlyA || chunkFiles(t, s) != before-onlyA {
		t.Fatalf("gc deleted %d chunks, want a's own %d (chunks %d -> %d)", st.ChunksDeleted, onlyA, before, chunkFiles(t, s))
	}
	if got := packBytes(t, s); got != beforeBytes-st.BytesDeleted || st.BytesDeleted < int64(onlyA)*MinChunk {
		t.Fatalf("packs: %d bytes -> %d, gc says %d deleted", beforeBytes, got, st.BytesDeleted)
	}
	if got := readAll(t, s, mb.ID()); !bytes.Equal(got, b) {
		t.Fatal("b damaged by gc")
	}
	if _, _, err := s.Open(ctx, ma.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open deleted blob: %v", err)
	}
}

// TestEncryptedAtRest writes a blob full of a unique marker, and a manifest,
// and finds the marker (or a chunk's or blob's ID) in no file and no file
// name under the store's directory.
func TestEncryptedAtRest(t *testing.T) {
	s := openStore(t, testKey())
	marker := []byte("UNIQUE-MARKER-7f3a9c-blob-at-rest")
	var content bytes.Buffer
	for content.Len() < 2<<20 {
		content.Write(marker)
		content.WriteString(strings.Repeat("x", content.Len()%97))
	}
	m, err := s.Put(context.Background(), bytes.NewReader(content.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	needles := [][]byte{marker, []byte(m.ID().String()), m.Chunks[0].ID[:], []byte(m.Chunks[0].ID.String())}
	files := 0
	err = filepath.WalkDir(s.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, n) || strings.Contains(p, string(n)) {
				t.Errorf("%s holds %q", p, n)
			}
		}
		return nil
	})
	if err != nil || files < 2 {
		t.Fatalf("walked %d files: %v", files, err)
	}
	if got := readAll(t, s, m.ID()); !bytes.Equal(got, content.Bytes()) {
		t.Fatal("content read back differs")
	}
	// The same directory opened with another key reads nothing.
	other, err := Open(s.Dir(), Options{Key: bytes.Repeat([]byte{8}, KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Open(context.Background(), m.ID()); err == nil {
		t.Fatal("another key opened the blob")
	}
}

func TestCorruptChunkOnDiskDetected(t *testing.T) {
	for _, key := range [][]byte{nil, testKey()} {
		s := openStore(t, key)
		data, _ := io.ReadAll(randReader(4, 512<<10))
		m, err := s.Put(context.Background(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		l := s.index[s.name(kindChunk, m.Chunks[1].ID)]
		f, err := os.OpenFile(s.packPath(l.pack), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var c [1]byte
		if _, err := f.ReadAt(c[:], l.off+int64(l.n)/2); err != nil {
			t.Fatal(err)
		}
		c[0] ^= 1
		if _, err := f.WriteAt(c[:], l.off+int64(l.n)/2); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		r, _, err := s.Open(context.Background(), m.ID())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read of a damaged chunk: %v", err)
		}
		// The damaged chunk was dropped: the blob is incomplete, to be fetched.
		if _, _, err := s.Open(context.Background(), m.ID()); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("open after damage: %v", err)
		}
	}
}

// TestReopenIndexesPacksAndCutsTornTail: a store reopened finds every chunk
// again, and a record a crash left half-written at a pack's end is cut
// and counts as absent.
func TestReopenIndexesPacksAndCutsTornTail(t *testing.T) {
	s := openStore(t, testKey())
	ctx := context.Background()
	data, _ := io.ReadAll(randReader(10, 2<<20))
	m, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	records := chunkFiles(t, s)
	s.Close()
	// Tear the last record: cut its pack in the middle of it.
	p := filepath.Join(s.Dir(), "packs", "00000001.pack")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()-20); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.Dir(), Options{Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := chunkFiles(t, s2); n != records-1 {
		t.Fatalf("after the tear, %d records, want %d", n, records-1)
	}
	if fi2, err := os.Stat(p); err != nil || fi2.Size() >= fi.Size()-20 {
		t.Fatalf("torn record not cut: %v", err)
	}
	// The last record written was a manifest page: the blob is incomplete
	// until it is stored again.
	if _, _, err := s2.Open(ctx, m.ID()); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("open after the tear: %v", err)
	}
	if err := s2.PutManifest(m); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s2, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("content after reopen differs")
	}
}
