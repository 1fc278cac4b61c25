package blob

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// ID names a chunk (the SHA-256 of its bytes) or a blob (the SHA-256 of its
// manifest's encoding).
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
type Manifest struct {
	Size   int64
	Digest [32]byte
	Chunks []ChunkRef
}

const (
	manifestMagic  = "FBM1"
	manifestHeader = 4 + 8 + 32 + 4
	manifestEntry  = 32 + 4
	// MaxBlobSize bounds one blob, so that a manifest stays small enough to
	// hold in memory (about 1.2 MB per GiB).
	MaxBlobSize = 16 << 30
	// maxManifest bounds a manifest's encoding.
	maxManifest = manifestHeader + manifestEntry*(MaxBlobSize/MinChunk+1)
)

// Encode returns the manifest's encoding (see the package doc).
func (m Manifest) Encode() []byte {
	b := make([]byte, 0, manifestHeader+manifestEntry*len(m.Chunks))
	b = append(b, manifestMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = append(b, m.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = append(b, c.ID[:]...)
		b = binary.BigEndian.AppendUint32(b, c.Size)
	}
	return b
}

// ID returns the blob's ID: the SHA-256 of the manifest's encoding.
func (m Manifest) ID() ID { return sha256.Sum256(m.Encode()) }

// DecodeManifest parses a manifest's encoding and checks that its chunk
// sizes add up to its size.
func DecodeManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) < manifestHeader || string(b[:4]) != manifestMagic {
		return m, fmt.Errorf("%w: bad manifest header", ErrCorrupt)
	}
	m.Size = int64(binary.BigEndian.Uint64(b[4:]))
	copy(m.Digest[:], b[12:44])
	n := binary.BigEndian.Uint32(b[44:])
	rest := b[manifestHeader:]
	if uint64(len(rest)) != uint64(n)*manifestEntry || m.Size < 0 || m.Size > MaxBlobSize {
		return m, fmt.Errorf("%w: manifest of %d chunks has %d bytes", ErrCorrupt, n, len(rest))
	}
	m.Chunks = make([]ChunkRef, n)
	var sum int64
	for i := range m.Chunks {
		e := rest[i*manifestEntry:]
		copy(m.Chunks[i].ID[:], e[:32])
		m.Chunks[i].Size = binary.BigEndian.Uint32(e[32:])
		if m.Chunks[i].Size == 0 || m.Chunks[i].Size > MaxChunk {
			return m, fmt.Errorf("%w: manifest chunk of %d bytes", ErrCorrupt, m.Chunks[i].Size)
		}
		sum += int64(m.Chunks[i].Size)
	}
	if sum != m.Size {
		return m, fmt.Errorf("%w: manifest chunks add up to %d, not %d", ErrCorrupt, sum, m.Size)
	}
	return m, nil
}
