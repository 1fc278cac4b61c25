package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Open returns a reader of blob id's content. It fails at once with
// ErrNotFound when the manifest is not stored and ErrIncomplete when a chunk
// is missing; while reading, a chunk that fails verification is an error
// wrapping ErrCorrupt (the chunk is deleted, so a fetch restores it), and
// at the end the content's digest is checked against the manifest's. One
// chunk is in memory at a time.
func (s *Store) Open(ctx context.Context, id ID) (io.ReadCloser, Manifest, error) {
	m, err := s.Manifest(id)
	if err != nil {
		return nil, Manifest{}, err
	}
	if miss, n := s.Missing(m); len(miss) > 0 {
		return nil, m, fmt.Errorf("blob %s: %w: %d chunks (%d bytes) missing", id, ErrIncomplete, len(miss), n)
	}
	return &reader{ctx: ctx, s: s, m: m, whole: sha256.New(), buf: chunkBuf()}, m, nil
}

// reader reads a blob chunk by chunk.
type reader struct {
	ctx   context.Context
	s     *Store
	m     Manifest
	next  int    // the next chunk to load
	cur   []byte // the unread rest of the loaded chunk
	buf   []byte
	whole hash.Hash
	err   error
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.load()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// load reads the next chunk, or checks the digest at the end.
func (r *reader) load() error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	if r.next == len(r.m.Chunks) {
		if [32]byte(r.whole.Sum(nil)) != r.m.Digest {
			return fmt.Errorf("blob: %w: content digest mismatch", ErrCorrupt)
		}
		return io.EOF
	}
	c := r.m.Chunks[r.next]
	b, err := r.s.ReadChunk(c.ID, r.buf)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w: %w", ErrIncomplete, err)
		}
		return err
	}
	if len(b) != int(c.Size) {
		return fmt.Errorf("blob: %w: chunk of %d bytes, manifest says %d", ErrCorrupt, len(b), c.Size)
	}
	r.next++
	r.whole.Write(b)
	r.cur = b
	return nil
}

func (r *reader) Close() error {
	r.err = fmt.Errorf("blob reader: %w", io.ErrClosedPipe)
	r.cur = nil
	return nil
}
