package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Chunk sizes. Every device cuts with the same parameters and polynomial,
// so the same content gives the same chunks everywhere.
const (
	// MinChunk is the smallest chunk (but a blob's last).
	MinChunk = 16 << 10
	// MaxChunk is the largest chunk.
	MaxChunk = 128 << 10
	// averageBits sets the expected distance past MinChunk to a cut:
	// 2^14 = 16 KiB, so chunks average about 32 KiB.
	averageBits = 14
	// polynomial is the irreducible polynomial of the Rabin fingerprint
	// (the one restic/chunker tests with, known to be irreducible).
	polynomial = chunker.Pol(0x3DA3358B4DC173)
)

// Put reads r to its end, stores its chunks (those not stored yet) and its
// manifest, and returns the manifest. One chunk is in memory at a time.
// Put blocks GC while it runs.
func (s *Store) Put(ctx context.Context, r io.Reader) (Manifest, error) {
	s.gc.RLock()
	defer s.gc.RUnlock()
	ch := chunker.NewWithBoundaries(r, polynomial, MinChunk, MaxChunk)
	ch.SetAverageBits(averageBits)
	buf := make([]byte, MaxChunk)
	scratch := chunkBuf()
	whole := sha256.New()
	var m Manifest
	for {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		c, err := ch.Next(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("put blob: %w", err)
		}
		if m.Size += int64(c.Length); m.Size > MaxBlobSize {
			return Manifest{}, fmt.Errorf("put blob: %w", ErrTooLarge)
		}
		whole.Write(c.Data)
		id := ID(sha256.Sum256(c.Data))
		if err := s.putChunk(id, c.Data, scratch); err != nil {
			return Manifest{}, fmt.Errorf("put blob: %w", err)
		}
		m.Chunks = append(m.Chunks, ChunkRef{ID: id, Size: uint32(c.Length)})
	}
	copy(m.Digest[:], whole.Sum(nil))
	if err := s.PutManifest(m); err != nil {
		return Manifest{}, fmt.Errorf("put blob: %w", err)
	}
	return m, nil
}
