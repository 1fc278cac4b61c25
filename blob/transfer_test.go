package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
)

// bufPipe is one direction of an in-memory stream with a bounded buffer,
// as a transport stream has a flow-control window: writes block while it
// is full, reads while it is empty.
type bufPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool // both ends done: reads and writes fail
	eof    bool // the writer is done: reads drain, then EOF
}

const pipeWindow = 256 << 10

func newBufPipe() *bufPipe {
	p := &bufPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(b) {
		for !p.closed && !p.eof && len(p.buf) >= pipeWindow {
			p.cond.Wait()
		}
		if p.closed || p.eof {
			return n, io.ErrClosedPipe
		}
		k := min(len(b)-n, pipeWindow-len(p.buf))
		p.buf = append(p.buf, b[n:n+k]...)
		n += k
		p.cond.Broadcast()
	}
	return n, nil
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && !p.eof && len(p.buf) == 0 {
		p.cond.Wait()
	}
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.cond.Broadcast()
	return n, nil
}

func (p *bufPipe) end(closed bool) {
	p.mu.Lock()
	if closed {
		p.closed = true
	}
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pipeConn is one end of an in-memory transfer stream.
type pipeConn struct{ r, w *bufPipe }

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) CloseWrite() error           { p.w.end(false); return nil }
func (p *pipeConn) Close() error {
	p.r.end(true)
	p.w.end(true)
	return nil
}

func connPair() (*pipeConn, *pipeConn) {
	ab, ba := newBufPipe(), newBufPipe()
	return &pipeConn{r: ba, w: ab}, &pipeConn{r: ab, w: ba}
}

// tamperConn wraps a receiver's end: it flips one byte at offset at of the
// bytes read (once), or fails every read once cut bytes were read.
type tamperConn struct {
	Conn
	read    int64
	at, cut int64 // 0: never
}

func (t *tamperConn) Read(b []byte) (int, error) {
	if t.cut > 0 && t.read >= t.cut {
		_ = t.Conn.Close()
		return 0, errors.New("test: connection cut")
	}
	if t.cut > 0 && int64(len(b)) > t.cut-t.read {
		b = b[:t.cut-t.read]
	}
	n, err := t.Conn.Read(b)
	if t.at > 0 && t.read <= t.at && t.at < t.read+int64(n) {
		b[t.at-t.read] ^= 0x40
	}
	t.read += int64(n)
	return n, err
}

// transfer serves from src and fetches id into dst over an in-memory
// stream, the receiver's end wrapped by wrap (nil: none).
func transfer(t *testing.T, src, dst *Store, id ID, wrap func(Conn) Conn, sc, rc *Counters) error {
	t.Helper()
	a, b := connPair()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = Serve(context.Background(), src, a, sc)
		_ = a.Close()
	}()
	var conn Conn = b
	if wrap != nil {
		conn = wrap(b)
	}
	err := Fetch(context.Background(), dst, conn, id, FetchOptions{Counters: rc})
	_ = b.Close()
	wg.Wait()
	return err
}

func TestFetchSendsOnlyMissingChunks(t *testing.T) {
	src, dst := openStore(t, testKey()), openStore(t, nil)
	ctx := context.Background()
	data, _ := io.ReadAll(randReader(5, 8<<20))
	m, err := src.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	// dst holds the first half already, as another blob.
	half, err := dst.Put(ctx, bytes.NewReader(data[:4<<20]))
	if err != nil {
		t.Fatal(err)
	}
	_, want := dst.Missing(m)
	var sc, rc Counters
	if err := transfer(t, src, dst, m.ID(), nil, &sc, &rc); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dst, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("fetched content differs")
	}
	if sc.ChunkBytesSent.Load() != want || want > 4<<20+2*MaxChunk || len(half.Chunks) == 0 {
		t.Fatalf("sent %d chunk bytes, want only the missing %d", sc.ChunkBytesSent.Load(), want)
	}
	// Fetching again sends nothing.
	sc = Counters{}
	if err := transfer(t, src, dst, m.ID(), nil, &sc, &rc); err != nil || sc.ChunksSent.Load() != 0 {
		t.Fatalf("second fetch: %v, %d chunks sent", err, sc.ChunksSent.Load())
	}
}

func TestFetchRejectsCorruptChunkAndFetchesItAgain(t *testing.T) {
	src, dst := openStore(t, testKey()), openStore(t, testKey())
	data, _ := io.ReadAll(randReader(6, 4<<20))
	m, err := src.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var sc, rc Counters
	wrap := func(c Conn) Conn { return &tamperConn{Conn: c, at: 2 << 20} } // inside some chunk's data
	if err := transfer(t, src, dst, m.ID(), wrap, &sc, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Corrupt.Load() != 1 {
		t.Fatalf("%d chunks rejected, want 1", rc.Corrupt.Load())
	}
	if sc.ChunksSent.Load() != int64(len(m.Chunks))+1 || rc.ChunkBytesRecv.Load() > m.Size+MaxChunk {
		t.Fatalf("%d chunks sent for %d (+1 again), %d bytes received", sc.ChunksSent.Load(), len(m.Chunks), rc.ChunkBytesRecv.Load())
	}
	if got := readAll(t, dst, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("fetched content differs")
	}
}

func TestFetchResumesAfterCut(t *testing.T) {
	src, dst := openStore(t, testKey()), openStore(t, testKey())
	data, _ := io.ReadAll(randReader(7, 16<<20))
	m, err := src.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var sc, rc Counters
	wrap := func(c Conn) Conn { return &tamperConn{Conn: c, cut: 9 << 20} }
	if err := transfer(t, src, dst, m.ID(), wrap, &sc, &rc); err == nil {
		t.Fatal("cut fetch succeeded")
	}
	_, left := dst.Missing(m)
	if left == 0 || left > m.Size-8<<20 {
		t.Fatalf("after the cut %d bytes missing", left)
	}
	first := sc.ChunkBytesSent.Load()
	if err := transfer(t, src, dst, m.ID(), nil, &sc, &rc); err != nil {
		t.Fatal(err)
	}
	if resent := sc.ChunkBytesSent.Load() - m.Size; resent > GroupBytes || sc.ChunkBytesSent.Load()-first != left {
		t.Fatalf("resent %d bytes (second fetch %d, missing %d)", resent, sc.ChunkBytesSent.Load()-first, left)
	}
	if got := readAll(t, dst, m.ID()); !bytes.Equal(got, data) {
		t.Fatal("fetched content differs")
	}
}

func TestServeRefusesUnlistedChunksAndUnknownBlobs(t *testing.T) {
	src, dst := openStore(t, nil), openStore(t, nil)
	data, _ := io.ReadAll(randReader(8, 1<<20))
	m, err := src.Put(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := transfer(t, src, dst, ID{1}, nil, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown blob: %v", err)
	}
	// A receiver that asks for a chunk without its manifest gets nothing.
	a, b := connPair()
	go func() { _ = Serve(context.Background(), src, a, nil); _ = a.Close() }()
	f := newFrameConn(b, &Counters{})
	if err := f.write(frameWant, m.Chunks[0].ID[:]); err != nil {
		t.Fatal(err)
	}
	typ, _, err := f.read(64 + MaxChunk)
	if err != nil || typ != frameNoChunk {
		t.Fatalf("unlisted chunk: frame %q, %v", typ, err)
	}
	_ = b.Close()
}
