package blob

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Transfer defaults and limits.
const (
	// GroupBytes is how many bytes of chunks a receiver asks for at once
	// (and so, at most, what a transfer cut off sends again).
	GroupBytes = 4 << 20
	// MaxRetries is how many times a chunk that fails verification is
	// asked for again before the fetch gives up with ErrCorrupt.
	MaxRetries = 3
	// maxWant bounds the IDs in one want frame.
	maxWant = 4096
	// frameHeader is a frame's type and length.
	frameHeader = 5
)

// Frame types (see the package doc).
const (
	frameGetManifest = 'M'
	frameWant        = 'W'
	frameManifest    = 'm'
	frameNoManifest  = 'n'
	frameChunk       = 'c'
	frameNoChunk     = 'x'
)

// Conn is one transfer stream (core.Stream satisfies it): CloseWrite
// ends this side's writes, Close both directions.
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Counters counts one side's transfer traffic. Safe for concurrent use;
// Serve and Fetch add to it.
type Counters struct {
	ChunksSent, ChunkBytesSent atomic.Int64 // chunks served (data bytes)
	ChunksRecv, ChunkBytesRecv atomic.Int64 // chunks received (data bytes, verified or not)
	Corrupt                    atomic.Int64 // received chunks that failed verification
	// WireSent and WireRecv count every frame byte written and read on
	// transfer streams (requests, manifests, chunks, headers).
	WireSent, WireRecv atomic.Int64
}

// FetchOptions tunes Fetch. The zero value is usable.
type FetchOptions struct {
	// Counters, when set, counts the traffic.
	Counters *Counters
	// Progress, when set, is called after each stored chunk with the bytes
	// of the blob's distinct chunks held and their total.
	Progress func(done, total int64)
	// GroupBytes overrides GroupBytes (0: GroupBytes).
	GroupBytes int
}

// frameConn reads and writes transfer frames.
type frameConn struct {
	c   io.ReadWriteCloser
	n   *Counters
	r   *bufio.Reader
	out []byte // scratch for outgoing frames
	in  []byte // scratch for incoming payloads
}

func newFrameConn(c io.ReadWriteCloser, n *Counters) *frameConn {
	return &frameConn{c: c, n: n, r: bufio.NewReaderSize(c, 64<<10)}
}

// write sends one frame whose payload is the concatenation of parts.
func (f *frameConn) write(t byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := append(f.out[:0], t, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	for _, p := range parts {
		b = append(b, p...)
	}
	f.out = b
	w, err := f.c.Write(b)
	f.n.WireSent.Add(int64(w))
	return err
}

// read returns the next frame's type and payload (valid until the next
// read), refusing payloads above max.
func (f *frameConn) read(max int) (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, nil, err
	}
	f.n.WireRecv.Add(frameHeader)
	n := int(binary.BigEndian.Uint32(h[1:]))
	if n > max {
		return 0, nil, fmt.Errorf("%w: %q frame of %d bytes", ErrProtocol, h[0], n)
	}
	if cap(f.in) < n {
		f.in = make([]byte, n)
	}
	b := f.in[:n]
	k, err := io.ReadFull(f.r, b)
	f.n.WireRecv.Add(int64(k))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], b, nil
}

// closeOnDone closes c when ctx ends (to unblock a read or write); stop
// undoes it.
func closeOnDone(ctx context.Context, c io.Closer) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
}

// Serve answers one receiver's requests on conn until it closes its side
// (nil) or ctx ends. It serves a chunk only if it is listed by a manifest
// the receiver asked for on conn. It does not close conn.
func Serve(ctx context.Context, s *Store, conn Conn, c *Counters) error {
	if c == nil {
		c = &Counters{}
	}
	defer closeOnDone(ctx, conn)()
	f := newFrameConn(conn, c)
	allowed := map[ID]bool{}
	buf := chunkBuf()
	for {
		t, p, err := f.read(maxWant * 32)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("serve blob: %w", err)
		}
		switch {
		case t == frameGetManifest && (len(p) == 32 || len(p) == 33):
			id, held := ID(p[:32]), len(p) == 33
			m, err := s.Manifest(id)
			switch {
			case err != nil:
				err = f.write(frameNoManifest, id[:])
			case held: // a resumed fetch: it has the manifest
				err = f.write(frameManifest)
			default:
				err = f.write(frameManifest, m.Encode())
			}
			for _, ch := range m.Chunks {
				allowed[ch.ID] = true
			}
			if err != nil {
				return fmt.Errorf("serve blob: %w", err)
			}
		case t == frameWant && len(p)%32 == 0:
			ids := make([]ID, len(p)/32) // p is reused by the writes below
			for i := range ids {
				ids[i] = ID(p[i*32:])
			}
			for _, id := range ids {
				if err := serveChunk(s, f, id, allowed[id], buf, c); err != nil {
					return fmt.Errorf("serve blob: %w", err)
				}
			}
		default:
			return fmt.Errorf("serve blob: %w: frame %q of %d bytes", ErrProtocol, t, len(p))
		}
	}
}

func serveChunk(s *Store, f *frameConn, id ID, allowed bool, buf []byte, c *Counters) error {
	if !allowed {
		return f.write(frameNoChunk, id[:])
	}
	data, err := s.ReadChunk(id, buf)
	if err != nil {
		return f.write(frameNoChunk, id[:])
	}
	c.ChunksSent.Add(1)
	c.ChunkBytesSent.Add(int64(len(data)))
	return f.write(frameChunk, id[:], data)
}

// Fetch brings blob id into s from the sender at the other end of conn:
// the manifest unless s holds it, then every chunk s lacks, verified as it
// arrives and stored at once. It returns nil once s holds the whole blob,
// ErrNotFound when the sender lacks the manifest, ErrIncomplete when it
// lacks some chunks (the others are stored: fetch the rest elsewhere), and
// ErrCorrupt when a chunk failed verification MaxRetries times. A fetch cut
// off (any other error) resumes where it stopped when called again. It
// closes its side of conn for writing when done, and does not close conn.
func Fetch(ctx context.Context, s *Store, conn Conn, id ID, opts FetchOptions) error {
	if opts.Counters == nil {
		opts.Counters = &Counters{}
	}
	if opts.GroupBytes <= 0 {
		opts.GroupBytes = GroupBytes
	}
	s.gc.RLock() // GC would take chunks being written for garbage
	defer s.gc.RUnlock()
	defer closeOnDone(ctx, conn)()
	f := newFrameConn(conn, opts.Counters)
	m, err := s.Manifest(id)
	if err == nil {
		err = openManifest(f, id)
	} else if errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		m, err = fetchManifest(s, f, id)
	}
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", id, err)
	}
	queue, missing := s.Missing(m)
	var total int64
	seen := make(map[ID]bool, len(m.Chunks))
	for _, ch := range m.Chunks {
		if !seen[ch.ID] {
			seen[ch.ID] = true
			total += int64(ch.Size)
		}
	}
	done := total - missing
	if opts.Progress != nil {
		opts.Progress(done, total)
	}
	rc := &receiver{s: s, f: f, opts: opts, done: done, total: total, tries: map[ID]int{}, scratch: chunkBuf()}
	for len(queue) > 0 {
		n, size := 0, 0
		for n < len(queue) && n < maxWant && (n == 0 || size+int(queue[n].Size) <= opts.GroupBytes) {
			size += int(queue[n].Size)
			n++
		}
		group := queue[:n]
		if queue, err = rc.group(group, queue[n:]); err != nil {
			return fmt.Errorf("fetch blob %s: %w", id, err)
		}
	}
	_ = conn.CloseWrite()
	if rc.absent > 0 {
		return fmt.Errorf("fetch blob %s: %w: the peer lacks %d chunks", id, ErrIncomplete, rc.absent)
	}
	return nil
}

// openManifest tells the sender which blob a resumed fetch is for.
func openManifest(f *frameConn, id ID) error {
	if err := f.write(frameGetManifest, id[:], []byte{1}); err != nil {
		return err
	}
	t, p, err := f.read(maxManifest)
	switch {
	case err != nil:
		return err
	case t == frameNoManifest:
		return ErrNotFound
	case t != frameManifest || len(p) != 0:
		return fmt.Errorf("%w: frame %q instead of an empty manifest", ErrProtocol, t)
	}
	return nil
}

func fetchManifest(s *Store, f *frameConn, id ID) (Manifest, error) {
	if err := f.write(frameGetManifest, id[:]); err != nil {
		return Manifest{}, err
	}
	t, p, err := f.read(maxManifest)
	if err != nil {
		return Manifest{}, err
	}
	switch {
	case t == frameNoManifest:
		return Manifest{}, ErrNotFound
	case t != frameManifest:
		return Manifest{}, fmt.Errorf("%w: frame %q instead of a manifest", ErrProtocol, t)
	}
	m, err := DecodeManifest(p)
	if err == nil && m.ID() != id {
		err = fmt.Errorf("%w: manifest does not hash to its id", ErrCorrupt)
	}
	if err != nil {
		return Manifest{}, err
	}
	return m, s.PutManifest(m)
}

// receiver is the state of one Fetch.
type receiver struct {
	s           *Store
	f           *frameConn
	opts        FetchOptions
	done, total int64
	tries       map[ID]int // verification failures per chunk
	absent      int        // chunks the sender lacks
	scratch     []byte
}

// group asks for the chunks of group and stores them as they arrive; it
// returns rest with the chunks to ask for again appended.
func (rc *receiver) group(group, rest []ChunkRef) ([]ChunkRef, error) {
	want := make([]byte, 0, 32*len(group))
	for _, ch := range group {
		want = append(want, ch.ID[:]...)
	}
	if err := rc.f.write(frameWant, want); err != nil {
		return nil, err
	}
	for _, ch := range group {
		t, p, err := rc.f.read(32 + MaxChunk)
		if err != nil {
			return nil, err
		}
		if len(p) < 32 || ID(p[:32]) != ch.ID || (t != frameChunk && t != frameNoChunk) {
			return nil, fmt.Errorf("%w: frame %q out of order", ErrProtocol, t)
		}
		if t == frameNoChunk {
			rc.absent++
			continue
		}
		data := p[32:]
		rc.opts.Counters.ChunksRecv.Add(1)
		rc.opts.Counters.ChunkBytesRecv.Add(int64(len(data)))
		if len(data) != int(ch.Size) {
			err = fmt.Errorf("%w: chunk of %d bytes, manifest says %d", ErrCorrupt, len(data), ch.Size)
		} else {
			err = rc.s.WriteChunk(ch.ID, data, rc.scratch)
		}
		if errors.Is(err, ErrCorrupt) {
			rc.opts.Counters.Corrupt.Add(1)
			if rc.tries[ch.ID]++; rc.tries[ch.ID] > MaxRetries {
				return nil, err
			}
			rest = append(rest, ch)
			continue
		}
		if err != nil {
			return nil, err
		}
		rc.done += int64(ch.Size)
		if rc.opts.Progress != nil {
			rc.opts.Progress(rc.done, rc.total)
		}
	}
	return rest, nil
}
