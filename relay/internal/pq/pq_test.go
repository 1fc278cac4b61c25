package pq

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestQueue: bounded offers, a read deadline that also wakes a waiting
// reader (quic-go's Transport.Close relies on it), and Close.
func TestQueue(t *testing.T) {
	q := New(1)
	if !q.Offer(Packet{B: []byte("a")}) || q.Offer(Packet{B: []byte("b")}) {
		t.Fatal("a queue of one took zero or two packets")
	}
	buf := make([]byte, 8)
	if n, _, err := q.ReadFrom(buf); err != nil || string(buf[:n]) != "a" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := q.ReadFrom(buf)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	_ = q.SetReadDeadline(time.Now())
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a deadline set while reading: %v", err)
	}
	_ = q.SetReadDeadline(time.Time{})
	_ = q.Close()
	if _, _, err := q.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
