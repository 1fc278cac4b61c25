// Package pq is a bounded queue of received packets with the read-deadline
// semantics of a net.PacketConn, for the packet conns that relay code feeds
// from goroutines rather than from a socket.
//
// The queue is a slice under a mutex, not a channel: a reader takes the
// packets already queued without a select, and a producer that offers a
// whole batch (OfferBatch) wakes a waiting reader once, not once a packet.
// At a few hundred thousand packets a second, those wake-ups were a large
// share of the relayed path's cost.
package pq

import (
	"net"
	"os"
	"sync"
	"time"
)

// Packet is one received packet and its source.
type Packet struct {
	B    []byte
	From net.Addr

	pooled *[]byte // B's buffer, returned to the pool once read
}

// BufferSize is the size of the buffers Copy takes from its pool: room for
// any packet the relay forwards.
const BufferSize = 1500

var pool = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

// Copy returns a packet holding a copy of b in a pooled buffer (b is
// truncated to BufferSize), which ReadFrom returns to the pool, or Release
// when the packet is dropped.
func Copy(b []byte, from net.Addr) Packet {
	buf := pool.Get().(*[]byte)
	n := copy(*buf, b)
	return Packet{B: (*buf)[:n], From: from, pooled: buf}
}

// Release returns p's buffer to the pool, if it has one; p must not be
// used afterwards.
func (p Packet) Release() {
	if p.pooled != nil {
		pool.Put(p.pooled)
	}
}

// Queue holds received packets until ReadFrom takes them.
type Queue struct {
	max    int
	ready  chan struct{} // one token while packets wait for a reader
	space  chan struct{} // one token after a read made room (Put)
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	pkts     []Packet // pkts[head:] are queued
	head     int
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
}

// New returns a queue of at most n packets.
func New(n int) *Queue {
	return &Queue{max: n, ready: make(chan struct{}, 1), space: make(chan struct{}, 1), closed: make(chan struct{}), wake: make(chan struct{})}
}

// Offer queues p unless the queue is full or closed; it reports whether
// it did.
func (q *Queue) Offer(p Packet) bool {
	return q.OfferBatch([]Packet{p}) == 1
}

// OfferBatch queues as many of ps as there is room for, in order, and
// returns how many; the others are released. It wakes a waiting reader
// once.
func (q *Queue) OfferBatch(ps []Packet) int {
	select {
	case <-q.closed:
		for _, p := range ps {
			p.Release()
		}
		return 0
	default:
	}
	q.mu.Lock()
	if q.head > 0 && len(q.pkts)+len(ps) > cap(q.pkts) {
		// Move the queued packets to the front rather than grow.
		n := copy(q.pkts, q.pkts[q.head:])
		clear(q.pkts[n:])
		q.pkts, q.head = q.pkts[:n], 0
	}
	room := q.max - (len(q.pkts) - q.head)
	n := min(max(room, 0), len(ps))
	q.pkts = append(q.pkts, ps[:n]...)
	q.mu.Unlock()
	for _, p := range ps[n:] {
		p.Release()
	}
	if n > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return n
}

// Put queues p, waiting for room until the queue closes or stop is closed.
func (q *Queue) Put(p Packet, stop <-chan struct{}) bool {
	for {
		if q.Offer(p) {
			return true
		}
		select {
		case <-q.closed:
			return false
		case <-stop:
			return false
		case <-q.space:
		}
	}
}

// take pops the oldest packet, if any.
func (q *Queue) take() (Packet, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.pkts) {
		return Packet{}, false
	}
	p := q.pkts[q.head]
	q.pkts[q.head] = Packet{}
	select {
	case q.space <- struct{}{}:
	default:
	}
	q.head++
	if q.head == len(q.pkts) {
		q.pkts, q.head = q.pkts[:0], 0
	} else {
		// Others wait: leave the token for the next read.
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return p, true
}

// ReadFrom copies the next packet into b.
func (q *Queue) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if p, ok := q.take(); ok {
			n := copy(b, p.B)
			p.Release()
			return n, p.From, nil
		}
		q.mu.Lock()
		dl, wake := q.deadline, q.wake
		q.mu.Unlock()
		var timer <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-q.ready:
		case <-q.closed:
			return 0, nil, net.ErrClosed
		case <-timer:
			return 0, nil, os.ErrDeadlineExceeded
		case <-wake:
		}
	}
}

// SetReadDeadline sets the deadline of ReadFrom.
func (q *Queue) SetReadDeadline(t time.Time) error {
	q.mu.Lock()
	q.deadline = t
	close(q.wake)
	q.wake = make(chan struct{})
	q.mu.Unlock()
	return nil
}

// Close makes ReadFrom fail with net.ErrClosed. Idempotent.
func (q *Queue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

// Done is closed by Close.
func (q *Queue) Done() <-chan struct{} { return q.closed }
