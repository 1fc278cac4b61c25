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

// TestBatchOrderAndBound: a batch goes in order up to the bound, the rest
// is refused; pooled copies come back intact; a reader waiting when a
// batch arrives reads all of it; Put waits for room.
func TestBatchOrderAndBound(t *testing.T) {
	q := New(3)
	var ps []Packet
	for i := range 5 {
		ps = append(ps, Copy([]byte{byte('a' + i)}, nil))
	}
	if n := q.OfferBatch(ps); n != 3 {
		t.Fatalf("a queue of three took %d of five", n)
	}
	buf := make([]byte, 8)
	var got []byte
	for range 3 {
		n, _, err := q.ReadFrom(buf)
		if err != nil || n != 1 {
			t.Fatalf("read %d, %v", n, err)
		}
		got = append(got, buf[0])
	}
	if string(got) != "abc" {
		t.Fatalf("read %q, want abc", got)
	}
	done := make(chan string)
	go func() {
		var s []byte
		for range 4 {
			n, _, err := q.ReadFrom(buf)
			if err != nil {
				done <- err.Error()
				return
			}
			s = append(s, buf[:n]...)
		}
		done <- string(s)
	}()
	time.Sleep(10 * time.Millisecond)
	if n := q.OfferBatch([]Packet{Copy([]byte("w"), nil), Copy([]byte("x"), nil), Copy([]byte("y"), nil)}); n != 3 {
		t.Fatalf("offered 3 to an empty queue, took %d", n)
	}
	for q.Offer(Copy([]byte("z"), nil)) == false {
		time.Sleep(time.Millisecond)
	}
	if s := <-done; s != "wxyz" {
		t.Fatalf("waiting reader got %q, want wxyz", s)
	}
	for range 3 {
		q.Offer(Packet{B: []byte("f")})
	}
	put := make(chan bool)
	go func() { put <- q.Put(Packet{B: []byte("p")}, nil) }()
	select {
	case <-put:
		t.Fatal("Put into a full queue returned")
	case <-time.After(20 * time.Millisecond):
	}
	if _, _, err := q.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	if !<-put {
		t.Fatal("Put failed after a read made room")
	}
}
