package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"
)

func TestRuns(t *testing.T) {
	sizes := func(ps ...int) [][]byte {
		var out [][]byte
		for _, n := range ps {
			out = append(out, make([]byte, n))
		}
		return out
	}
	var got []string
	Runs(sizes(5, 5, 5, 3, 5, 7, 7, 7), func(run [][]byte) {
		var s []int
		for _, p := range run {
			s = append(s, len(p))
		}
		got = append(got, fmt.Sprint(s))
	})
	want := []string{"[5 5 5 3]", "[5]", "[7 7 7]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
}

// TestRoundTrip sends runs of packets (segmented where the kernel allows)
// and reads them back (coalesced where it does), in order and intact.
func TestRoundTrip(t *testing.T) {
	a, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ca, cb := New(a), New(b)
	t.Logf("gso %v, gro %v", ca.gso.Load(), cb.gro)
	var sent [][]byte
	for i := range 100 {
		size := 1200
		if i%25 == 24 {
			size = 300 // ends a run
		}
		p := bytes.Repeat([]byte{byte(i)}, size)
		sent = append(sent, p)
	}
	var scratch []byte
	Runs(sent, func(run [][]byte) {
		if scratch, err = ca.WriteRun(run, b.LocalAddr().(*net.UDPAddr), scratch); err != nil {
			t.Fatal(err)
		}
	})
	buf, oob := make([]byte, ReadBuffer), make([]byte, OOBSize)
	var got [][]byte
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(sent) {
		if err := cb.Read(buf, oob, func(p []byte, _ net.Addr) { got = append(got, append([]byte(nil), p...)) }); err != nil {
			t.Fatalf("after %d packets: %v", len(got), err)
		}
	}
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("packet %d: %d bytes of %d, want %d of %d", i, len(got[i]), got[i][0], len(sent[i]), sent[i][0])
		}
	}
}
