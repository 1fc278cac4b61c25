package blob

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// ID names a chunk (the SHA-256 of its bytes) or a blob (the SHA-256 of its
// manifest's top encoding).
type ID [32]byte

// String is the ID in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses an ID's hex form.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: bad blob id %q", ErrProtocol, s)
	}
	copy(id[:], b)
	return id, nil
}

// ChunkRef is one chunk of a blob.
type ChunkRef struct {
	ID   ID
	Size uint32
}

// Manifest describes a blob: its chunks in order, its size and the SHA-256
// of its content.
//
// It is stored and sent in two levels, so that a small edit in a large
// blob costs a small part of its manifest too: the chunk list is cut into
// pages, each page's encoding (n × (id [32], size u32)) is stored and
// sent as a chunk of its own, and the top encoding lists the pages. A
// page ends after a chunk whose ID's first byte is below pageCut (1 in
// 64 on average), or at pageMax chunks: the cuts depend on the chunks
// only, so an edit changes the pages around it and no other. The top
// encoding is 'FBM2', size u64, digest [32], count u32, then count ×
// (page id [32], page chunks u32), integers big-endian; the blob's ID is
// its SHA-256.
type Manifest struct {
	Size   int64
	Digest [32]byte
	Chunks []ChunkRef
}

const (
	topMagic  = "FBM2"
	topHeader = 4 + 8 + 32 + 4
	entrySize = 32 + 4
	// pageCut and pageMax cut the chunk list into pages (see Manifest).
	pageCut = 4
	pageMax = 1024
	// MaxBlobSize bounds one blob, so that a manifest stays small enough to
	// hold in memory (about 1.2 MB per GiB).
	MaxBlobSize = 16 << 30
	// maxTop bounds a top encoding.
	maxTop = topHeader + entrySize*(MaxBlobSize/MinChunk+1)
)

// pageRef is one page of a manifest: its chunk's ID and its length in
// chunk entries.
type pageRef struct {
	ID      ID
	Entries uint32
}

// top is a decoded top encoding.
type top struct {
	Size   int64
	Digest [32]byte
	Pages  []pageRef
}

// chunk returns the page's chunk reference.
func (g pageRef) chunk() ChunkRef { return ChunkRef{ID: g.ID, Size: g.Entries * entrySize} }

// encode returns the manifest's top encoding and its pages' encodings.
func (m Manifest) encode() (topEnc []byte, pages [][]byte) {
	var refs []pageRef
	var cur []byte
	flush := func() {
		refs = append(refs, pageRef{ID: sha256.Sum256(cur), Entries: uint32(len(cur) / entrySize)})
		pages = append(pages, cur)
		cur = nil
	}
	for _, c := range m.Chunks {
		cur = append(cur, c.ID[:]...)
		cur = binary.BigEndian.AppendUint32(cur, c.Size)
		if c.ID[0] < pageCut || len(cur) == pageMax*entrySize {
			flush()
		}
	}
	if len(cur) > 0 {
		flush()
	}
	b := make([]byte, 0, topHeader+entrySize*len(refs))
	b = append(b, topMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = append(b, m.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(refs)))
	for _, g := range refs {
		b = append(b, g.ID[:]...)
		b = binary.BigEndian.AppendUint32(b, g.Entries)
	}
	return b, pages
}

// ID returns the blob's ID: the SHA-256 of the manifest's top encoding.
func (m Manifest) ID() ID {
	t, _ := m.encode()
	return sha256.Sum256(t)
}

// decodeTop parses a top encoding.
func decodeTop(b []byte) (top, error) {
	var t top
	if len(b) < topHeader || string(b[:4]) != topMagic {
		return t, fmt.Errorf("%w: bad manifest header", ErrCorrupt)
	}
	t.Size = int64(binary.BigEndian.Uint64(b[4:]))
	copy(t.Digest[:], b[12:44])
	n := binary.BigEndian.Uint32(b[44:])
	rest := b[topHeader:]
	if uint64(len(rest)) != uint64(n)*entrySize || t.Size < 0 || t.Size > MaxBlobSize {
		return t, fmt.Errorf("%w: manifest of %d pages has %d bytes", ErrCorrupt, n, len(rest))
	}
	t.Pages = make([]pageRef, n)
	for i := range t.Pages {
		e := rest[i*entrySize:]
		t.Pages[i] = pageRef{ID: ID(e[:32]), Entries: binary.BigEndian.Uint32(e[32:])}
		if t.Pages[i].Entries == 0 || t.Pages[i].Entries > pageMax {
			return t, fmt.Errorf("%w: manifest page of %d chunks", ErrCorrupt, t.Pages[i].Entries)
		}
	}
	return t, nil
}

// appendPage decodes a page's encoding (verified against its ID by the
// caller) onto chunks.
func appendPage(chunks []ChunkRef, b []byte) ([]ChunkRef, error) {
	if len(b)%entrySize != 0 {
		return nil, fmt.Errorf("%w: manifest page of %d bytes", ErrCorrupt, len(b))
	}
	for i := 0; i < len(b); i += entrySize {
		c := ChunkRef{ID: ID(b[i : i+32]), Size: binary.BigEndian.Uint32(b[i+32:])}
		if c.Size == 0 || c.Size > MaxChunk {
			return nil, fmt.Errorf("%w: manifest chunk of %d bytes", ErrCorrupt, c.Size)
		}
		chunks = append(chunks, c)
	}
	return chunks, nil
}

// check verifies that the chunk sizes add up to the size.
func (m Manifest) check() error {
	var sum int64
	for _, c := range m.Chunks {
		sum += int64(c.Size)
	}
	if sum != m.Size {
		return fmt.Errorf("%w: manifest chunks add up to %d, not %d", ErrCorrupt, sum, m.Size)
	}
	return nil
}
