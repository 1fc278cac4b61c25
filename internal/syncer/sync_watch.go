package syncer

import (
	"errors"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// ErrStalled reports a peer that stopped part-way: it sent no whole
// SyncHello within Limits.HelloTimeout of the session's start (it opened no
// stream, or said nothing on it), or it stopped in the middle of a frame
// for longer than Limits.FrameTimeout. Its session is closed.
var ErrStalled = errors.New("peer stalled")

// frameWatch passes reads of a sync stream through and calls stalled when
// a frame, once its first byte has arrived, is not complete within timeout.
// It follows the frame boundaries from the headers that flow through it,
// so the reader above it needs no change; between frames it never fires
// (the idle path is the transport's keep-alive and idle timeout).
type frameWatch struct {
	core.Stream
	sched   core.Scheduler
	timeout time.Duration
	stalled func()

	// Reader goroutine only.
	hdr  [wire.HeaderSize]byte
	hn   int  // header bytes of the current frame seen so far
	left int  // payload bytes of the current frame still to come
	lost bool // framing no longer followed (a bad header)

	mu      sync.Mutex
	timer   core.Timer
	stopped bool
}

func watchFrames(st core.Stream, sched core.Scheduler, timeout time.Duration, stalled func()) *frameWatch {
	return &frameWatch{Stream: st, sched: sched, timeout: timeout, stalled: stalled}
}

// Read reads from the stream and follows the framing of what it read.
func (w *frameWatch) Read(p []byte) (int, error) {
	n, err := w.Stream.Read(p)
	if n > 0 {
		w.account(p[:n])
	}
	return n, err
}

func (w *frameWatch) account(b []byte) {
	for len(b) > 0 && !w.lost {
		if w.hn == 0 && w.left == 0 {
			w.arm() // a frame starts
		}
		if w.hn < wire.HeaderSize {
			c := copy(w.hdr[w.hn:], b)
			w.hn, b = w.hn+c, b[c:]
			if w.hn < wire.HeaderSize {
				continue
			}
			_, n, err := wire.DecodeHeader(w.hdr[:], wire.MaxFrameSize)
			if err != nil {
				// The reader above fails on this header; stop following.
				w.lost = true
				w.disarm()
				return
			}
			w.left = n
		} else {
			c := min(len(b), w.left)
			w.left, b = w.left-c, b[c:]
		}
		if w.left == 0 {
			w.hn = 0
			w.disarm() // the frame is complete
		}
	}
}

func (w *frameWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = w.sched.AfterFunc(w.timeout, w.stalled)
}

func (w *frameWatch) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

// stop disarms the watch for good.
func (w *frameWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}
