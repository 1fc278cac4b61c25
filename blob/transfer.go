package blob

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Transfer defaults and limits.
const (
	// GroupBytes is how many bytes of chunks a receiver keeps asked for
	// and not yet received (in requests of a quarter of it), and so, at
	// most, what a transfer cut off sends again.
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
	// ManifestBytesSent and ManifestBytesRecv count manifest pages, served
	// and received (not in the chunk counts).
	ManifestBytesSent, ManifestBytesRecv atomic.Int64
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
	allowed := map[ID]byte{}
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
			if err := serveManifest(s, f, ID(p[:32]), len(p) == 33, allowed); err != nil {
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

// serveManifest answers a get-manifest frame: with the top encoding (or
// nothing, when the receiver holds it), and allows the pages and chunks it
// lists.
func serveManifest(s *Store, f *frameConn, id ID, held bool, allowed map[ID]byte) error {
	s.gc.RLock()
	t, enc, err := s.top(id)
	var chunks []ChunkRef
	if err == nil {
		chunks, err = s.manifestHeld(id, t)
	}
	s.gc.RUnlock()
	if err != nil {
		return f.write(frameNoManifest, id[:])
	}
	for _, p := range t.Pages {
		allowed[p.ID] = allowPage
	}
	for _, ch := range chunks {
		allowed[ch.ID] = allowChunk
	}
	if held { // a resumed fetch: it has the top
		return f.write(frameManifest)
	}
	return f.write(frameManifest, enc)
}

// What a sender may serve on a stream (Serve's allowed map).
const (
	allowChunk = 1 // a chunk of a manifest asked for
	allowPage  = 2 // a page of a manifest asked for
)

func serveChunk(s *Store, f *frameConn, id ID, allowed byte, buf []byte, c *Counters) error {
	if allowed == 0 {
		return f.write(frameNoChunk, id[:])
	}
	data, err := s.ReadChunk(id, buf)
	if err != nil {
		return f.write(frameNoChunk, id[:])
	}
	if allowed == allowPage {
		c.ManifestBytesSent.Add(int64(len(data)))
	} else {
		c.ChunksSent.Add(1)
		c.ChunkBytesSent.Add(int64(len(data)))
	}
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
	rc := newReceiver(s, f, opts)
	defer rc.stop() // what arrived is stored, even when cut off
	m, err := rc.manifest(id)
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
	rc.mu.Lock()
	rc.done, rc.total = total-missing, total
	if opts.Progress != nil {
		opts.Progress(rc.done, rc.total)
	}
	rc.mu.Unlock()
	if err := rc.all(queue, false); err != nil {
		return fmt.Errorf("fetch blob %s: %w", id, err)
	}
	_ = conn.CloseWrite()
	return nil
}

// manifest returns blob id's manifest: the top from the store (telling
// the sender which blob this is) or from the sender (stored), then the
// pages the store lacks from the sender.
func (rc *receiver) manifest(id ID) (Manifest, error) {
	t, _, err := rc.s.top(id)
	held := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		return Manifest{}, err
	}
	req := [][]byte{id[:]}
	if held {
		req = append(req, []byte{1})
	}
	if err := rc.f.write(frameGetManifest, req...); err != nil {
		return Manifest{}, err
	}
	typ, p, err := rc.f.read(maxTop)
	switch {
	case err != nil:
		return Manifest{}, err
	case typ == frameNoManifest:
		return Manifest{}, ErrNotFound
	case typ != frameManifest || held != (len(p) == 0):
		return Manifest{}, fmt.Errorf("%w: frame %q of %d bytes instead of a manifest", ErrProtocol, typ, len(p))
	}
	if !held {
		if sha256.Sum256(p) != id {
			return Manifest{}, fmt.Errorf("%w: manifest does not hash to its id", ErrCorrupt)
		}
		if t, err = decodeTop(p); err != nil {
			return Manifest{}, err
		}
		if err := rc.s.putTop(id, p); err != nil {
			return Manifest{}, err
		}
	}
	var pages []ChunkRef
	seen := map[ID]bool{}
	for _, pg := range t.Pages {
		if !seen[pg.ID] && !rc.s.HasChunk(pg.ID) {
			pages = append(pages, pg.chunk())
		}
		seen[pg.ID] = true
	}
	if err := rc.all(pages, true); err != nil {
		return Manifest{}, err
	}
	return rc.s.manifest(id)
}

// all fetches the chunks of queue (manifest pages when meta) and returns
// once every one is stored (or the sender lacks it). It asks in requests
// of a quarter of GroupBytes, keeping up to GroupBytes asked for and not
// yet received, so the sender never waits for the next request and a cut
// loses at most GroupBytes in flight.
func (rc *receiver) all(queue []ChunkRef, meta bool) error {
	rc.meta = meta
	var asked [][]ChunkRef // requests sent, not yet received, in order
	inflight := 0
	for {
		for len(queue) > 0 {
			n, size := 0, 0
			for n < len(queue) && n < maxWant && (n == 0 || size+int(queue[n].Size) <= rc.opts.GroupBytes/4) {
				size += int(queue[n].Size)
				n++
			}
			if len(asked) > 0 && inflight+size > rc.opts.GroupBytes {
				break
			}
			if err := rc.want(queue[:n]); err != nil {
				return err
			}
			asked = append(asked, queue[:n:n])
			inflight += size
			queue = queue[n:]
		}
		if len(asked) == 0 {
			rc.pending.Wait() // the writer's verdicts on the last chunks
			if queue = rc.retries(); len(queue) == 0 {
				break
			}
			continue
		}
		if err := rc.recv(asked[0]); err != nil {
			return err
		}
		for _, c := range asked[0] {
			inflight -= int(c.Size)
		}
		asked = asked[1:]
		queue = append(queue, rc.retries()...)
	}
	if err := rc.writeErr(); err != nil {
		return err
	}
	if rc.absent > 0 {
		return fmt.Errorf("%w: the peer lacks %d chunks", ErrIncomplete, rc.absent)
	}
	return nil
}

// receiver is the state of one Fetch. Its reading goroutine (Fetch's)
// hands each chunk to a writing goroutine (write) that verifies and stores
// it, so that network and disk overlap; at most writeQueue chunks wait.
type receiver struct {
	s      *Store
	f      *frameConn
	opts   FetchOptions
	absent int  // chunks the sender lacks
	meta   bool // fetching manifest pages (counted apart, no progress)

	work    chan received  // to the writer
	free    chan []byte    // chunk buffers
	pending sync.WaitGroup // chunks handed to the writer, not yet stored
	stopped sync.WaitGroup // the writer

	mu          sync.Mutex // guards the fields below (the writer's results)
	done, total int64
	tries       map[ID]int // verification failures per chunk
	retry       []ChunkRef // chunks to ask for again
	err         error      // the writer's first error
}

// writeQueue bounds the chunks waiting for the writer.
const writeQueue = 8

// received is a chunk read, waiting to be verified and stored.
type received struct {
	ref  ChunkRef
	data []byte
	meta bool
}

func newReceiver(s *Store, f *frameConn, opts FetchOptions) *receiver {
	rc := &receiver{s: s, f: f, opts: opts, tries: map[ID]int{}, work: make(chan received), free: make(chan []byte, writeQueue)}
	for range writeQueue {
		rc.free <- make([]byte, 0, MaxChunk)
	}
	rc.stopped.Add(1)
	go rc.write()
	return rc
}

// stop lets the writer store what it was handed, and waits for it.
func (rc *receiver) stop() {
	close(rc.work)
	rc.stopped.Wait()
}

// write verifies and stores the chunks handed to it.
func (rc *receiver) write() {
	defer rc.stopped.Done()
	scratch := chunkBuf()
	for w := range rc.work {
		var err error
		if len(w.data) != int(w.ref.Size) {
			err = fmt.Errorf("%w: chunk of %d bytes, manifest says %d", ErrCorrupt, len(w.data), w.ref.Size)
		} else {
			err = rc.s.WriteChunk(w.ref.ID, w.data, scratch)
		}
		rc.free <- w.data[:0]
		rc.mu.Lock()
		switch {
		case errors.Is(err, ErrCorrupt):
			rc.opts.Counters.Corrupt.Add(1)
			if rc.tries[w.ref.ID]++; rc.tries[w.ref.ID] > MaxRetries && rc.err == nil {
				rc.err = err
			}
			rc.retry = append(rc.retry, w.ref)
		case err != nil:
			if rc.err == nil {
				rc.err = err
			}
		case !w.meta:
			rc.done += int64(w.ref.Size)
			if rc.opts.Progress != nil {
				rc.opts.Progress(rc.done, rc.total)
			}
		}
		rc.mu.Unlock()
		rc.pending.Done()
	}
}

// retries takes the chunks to ask for again.
func (rc *receiver) retries() []ChunkRef {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.retry
	rc.retry = nil
	return r
}

func (rc *receiver) writeErr() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.err
}

// want asks for the chunks of group.
func (rc *receiver) want(group []ChunkRef) error {
	if err := rc.writeErr(); err != nil {
		return err
	}
	want := make([]byte, 0, 32*len(group))
	for _, ch := range group {
		want = append(want, ch.ID[:]...)
	}
	return rc.f.write(frameWant, want)
}

// recv reads the answers to the request for group and hands the chunks to
// the writer.
func (rc *receiver) recv(group []ChunkRef) error {
	for _, ch := range group {
		t, p, err := rc.f.read(32 + MaxChunk)
		if err != nil {
			return err
		}
		if len(p) < 32 || ID(p[:32]) != ch.ID || (t != frameChunk && t != frameNoChunk) {
			return fmt.Errorf("%w: frame %q out of order", ErrProtocol, t)
		}
		if t == frameNoChunk {
			rc.absent++
			continue
		}
		data := p[32:]
		if rc.meta {
			rc.opts.Counters.ManifestBytesRecv.Add(int64(len(data)))
		} else {
			rc.opts.Counters.ChunksRecv.Add(1)
			rc.opts.Counters.ChunkBytesRecv.Add(int64(len(data)))
		}
		buf := append(<-rc.free, data...)
		rc.pending.Add(1)
		rc.work <- received{ref: ch, data: buf, meta: rc.meta}
	}
	return nil
}
