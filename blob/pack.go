package blob

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Chunks live in pack files, packs/<n>.pack, appended to in turn: one
// record per chunk, its name (see Store.name), the length of its sealed
// bytes (u32, big-endian), then those bytes. Packing chunks rather than
// giving each a file matters: on the ext4 this was built on, creating a
// file cost some 0.5 ms, ten times the rest of a 32 KiB chunk's work.
// The index (name to place) is rebuilt from the record headers when the
// store opens, about 80 bytes of memory per chunk.

const (
	// PackSize is the length past which a pack is closed and a new one
	// started; GC rewrites packs that hold garbage.
	PackSize = 64 << 20
	// recordHeader is a record's name and length.
	recordHeader = 32 + 4
)

// loc is where a chunk's sealed bytes are.
type loc struct {
	pack uint32
	off  int64 // of the sealed bytes
	n    uint32
}

func (s *Store) packPath(n uint32) string {
	return filepath.Join(s.dir, "packs", fmt.Sprintf("%08d.pack", n))
}

// loadPacks indexes every pack and opens the last as the active one.
func (s *Store) loadPacks() error {
	ents, err := os.ReadDir(filepath.Join(s.dir, "packs"))
	if err != nil {
		return err
	}
	var nums []uint32
	for _, e := range ents {
		n, err := strconv.ParseUint(strings.TrimSuffix(e.Name(), ".pack"), 10, 32)
		if err == nil && strings.HasSuffix(e.Name(), ".pack") {
			nums = append(nums, uint32(n))
		}
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nums {
		size, err := s.indexPack(n)
		if err != nil {
			return err
		}
		s.active, s.size = n, size
	}
	if len(nums) == 0 {
		return s.newPackLocked(1)
	}
	return nil
}

// indexPack adds pack n's records to the index, truncating a torn tail,
// and returns the pack's length.
func (s *Store) indexPack(n uint32) (int64, error) {
	f, err := os.OpenFile(s.packPath(n), os.O_RDWR, 0o600)
	if err != nil {
		return 0, err
	}
	s.files[n] = f
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	var h [recordHeader]byte
	var off int64
	for off < st.Size() {
		if _, err := f.ReadAt(h[:], off); err != nil {
			break // torn header
		}
		l := binary.BigEndian.Uint32(h[32:])
		if off+recordHeader+int64(l) > st.Size() || l > MaxChunk+64 {
			break // torn record
		}
		name := [32]byte(h[:32])
		if _, dup := s.index[name]; !dup {
			s.index[name] = loc{pack: n, off: off + recordHeader, n: l}
		}
		off += recordHeader + int64(l)
	}
	if off < st.Size() {
		if err := f.Truncate(off); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// newPackLocked starts pack n as the active one.
func (s *Store) newPackLocked(n uint32) error {
	f, err := os.OpenFile(s.packPath(n), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	s.files[n] = f
	s.active, s.size = n, 0
	return nil
}

// appendRecord appends a record to the active pack and indexes it.
func (s *Store) appendRecord(name [32]byte, sealed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appendRecordLocked(name, sealed)
}

func (s *Store) appendRecordLocked(name [32]byte, sealed []byte) error {
	if s.closed {
		return errors.New("blob store closed")
	}
	if _, ok := s.index[name]; ok {
		return nil
	}
	if s.size >= PackSize {
		if err := s.newPackLocked(s.active + 1); err != nil {
			return err
		}
	}
	var h [recordHeader]byte
	copy(h[:], name[:])
	binary.BigEndian.PutUint32(h[32:], uint32(len(sealed)))
	f := s.files[s.active]
	if _, err := f.WriteAt(h[:], s.size); err != nil {
		return err
	}
	if _, err := f.WriteAt(sealed, s.size+recordHeader); err != nil {
		return err
	}
	s.index[name] = loc{pack: s.active, off: s.size + recordHeader, n: uint32(len(sealed))}
	s.size += recordHeader + int64(len(sealed))
	return nil
}

// readRecord reads the sealed bytes of name into buf.
func (s *Store) readRecord(name [32]byte, buf []byte) ([]byte, error) {
	s.mu.Lock()
	l, ok := s.index[name]
	f := s.files[l.pack]
	s.mu.Unlock()
	if !ok || f == nil {
		return nil, ErrNotFound
	}
	if cap(buf) < int(l.n) {
		buf = make([]byte, l.n)
	}
	b := buf[:l.n]
	if _, err := f.ReadAt(b, l.off); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: record beyond its pack's end", ErrCorrupt)
		}
		return nil, err
	}
	return b, nil
}

// drop forgets a chunk (its bytes stay in its pack until GC).
func (s *Store) drop(name [32]byte) {
	s.mu.Lock()
	delete(s.index, name)
	s.mu.Unlock()
}
