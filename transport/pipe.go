package transport

import (
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
)

// memPipeSize bounds the bytes buffered in one direction of a Mem stream,
// so a writer blocks (flow control) instead of growing memory.
const memPipeSize = 256 << 10

// pipe is one direction of an in-memory stream: a bounded buffer with
// half-close. Safe for one reader and one writer at a time.
type pipe struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte
	eof    bool  // the writer called closeWrite
	broken error // set when either side gave up; ends reads and writes
}

func newPipe() *pipe {
	p := &pipe{}
	p.cond.L = &p.mu
	return p
}

func (p *pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for len(b) > 0 {
		for len(p.buf) >= memPipeSize && p.broken == nil && !p.eof {
			p.cond.Wait()
		}
		if p.broken != nil {
			return n, p.broken
		}
		if p.eof {
			return n, io.ErrClosedPipe
		}
		k := min(len(b), memPipeSize-len(p.buf))
		p.buf = append(p.buf, b[:k]...)
		b, n = b[k:], n+k
		p.cond.Broadcast()
	}
	return n, nil
}

func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.eof && p.broken == nil {
		p.cond.Wait()
	}
	if p.broken != nil {
		return 0, p.broken
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil // let a drained buffer be collected
	}
	p.cond.Broadcast()
	return n, nil
}

func (p *pipe) closeWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eof = true
	p.cond.Broadcast()
}

func (p *pipe) breakWith(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken == nil {
		p.broken = err
		p.buf = nil
	}
	p.cond.Broadcast()
}

// memStream is one end of an in-memory stream.
type memStream struct {
	r, w *pipe
}

var _ core.Stream = (*memStream)(nil)

func (s *memStream) Read(b []byte) (int, error)  { return s.r.Read(b) }
func (s *memStream) Write(b []byte) (int, error) { return s.w.Write(b) }

// CloseWrite ends our direction; the peer reads io.EOF after the data.
func (s *memStream) CloseWrite() error {
	s.w.closeWrite()
	return nil
}

// Close ends both directions: the peer's further writes fail.
func (s *memStream) Close() error {
	s.w.closeWrite()
	s.r.breakWith(io.ErrClosedPipe)
	return nil
}
