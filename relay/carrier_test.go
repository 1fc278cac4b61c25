package relay

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestPacketWriter: packets come out whole and in order; past
// PacketWriterPending bytes, a dropping writer drops and a blocking one
// waits for the reader.
func TestPacketWriter(t *testing.T) {
	pkt := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1+i%MaxCarriedPacket) }
	const n = 2000 // about 1.5 MB: well past PacketWriterPending
	for _, block := range []bool{false, true} {
		a, b := net.Pipe()
		w := NewPacketWriter(a, nil, nil, block)
		sent := make(chan int)
		go func() {
			for i := range n {
				if err := w.WritePacket(pkt(i)); err != nil {
					t.Errorf("packet %d: %v", i, err)
				}
			}
			sent <- n
		}()
		if !block {
			<-sent // nobody reads: the writer must not wait
		}
		buf := make([]byte, MaxCarriedPacket)
		got, next := 0, 0
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			k, err := ReadPacket(b, buf)
			if err != nil {
				break
			}
			// Packets come in order, possibly with a gap (dropped ones).
			for next < n && !bytes.Equal(buf[:k], pkt(next)) {
				if block {
					t.Fatalf("blocking writer: packet %d missing or damaged", next)
				}
				next++
			}
			if next == n {
				t.Fatalf("received a packet that was not sent, or out of order (%d bytes)", k)
			}
			next++
			got++
			if got == n {
				break
			}
			_ = b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
		if block {
			<-sent
			if got != n {
				t.Fatalf("blocking writer: %d of %d packets arrived", got, n)
			}
			if !w.Flush(time.Second) {
				t.Fatal("Flush: packets still waiting after all were read")
			}
		} else if got == 0 || got == n {
			t.Fatalf("dropping writer with a stalled reader: %d of %d packets arrived, want some dropped", got, n)
		}
		w.Close()
		if err := w.WritePacket([]byte("x")); err == nil {
			t.Fatal("WritePacket after Close succeeded")
		}
		_ = a.Close()
		_ = b.Close()
	}
	// A failed write fails the packets after it, and wakes a writer
	// waiting for room.
	a, b := net.Pipe()
	w := NewPacketWriter(a, nil, nil, true)
	_ = b.Close()
	errc := make(chan error, 1)
	go func() {
		for {
			if err := w.WritePacket(pkt(MaxCarriedPacket - 1)); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("WritePacket kept succeeding, or hung, after the connection failed")
	}
}
