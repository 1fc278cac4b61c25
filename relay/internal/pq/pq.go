// Package pq is a bounded queue of received packets with the read-deadline
// semantics of a net.PacketConn, for the packet conns that relay code feeds
// from goroutines rather than from a socket.
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
}

// Queue holds received packets until ReadFrom takes them.
type Queue struct {
	ch     chan Packet
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed and replaced when the deadline changes
}

// New returns a queue of at most n packets.
func New(n int) *Queue {
	return &Queue{ch: make(chan Packet, n), closed: make(chan struct{}), wake: make(chan struct{})}
}

// Offer queues p unless the queue is full or closed; it reports whether
// it did.
func (q *Queue) Offer(p Packet) bool {
	select {
	case <-q.closed:
		return false
	default:
	}
	select {
	case q.ch <- p:
		return true
	default:
		return false
	}
}

// Put queues p, waiting for room until the queue closes or stop is closed.
func (q *Queue) Put(p Packet, stop <-chan struct{}) bool {
	select {
	case q.ch <- p:
		return true
	case <-q.closed:
		return false
	case <-stop:
		return false
	}
}

// ReadFrom copies the next packet into b.
func (q *Queue) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
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
		case p := <-q.ch:
			return copy(b, p.B), p.From, nil
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
