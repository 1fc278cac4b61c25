package wire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
)

// perByte bounds what every decoder of this package may allocate per input
// byte (plus allocbound.Slack). It is set by the representation, not by
// the decoders: a causal-context entry takes two bytes on the wire and a
// slot of a core.VersionVector (a Go map keyed by 32-byte ids: 40 bytes a
// slot, up to 16/7 slots an entry once the map rounds its size up), so a
// batch of tiny changes with contexts over some tens of devices costs
// about 42 bytes per byte (TestContextsWorstCase). A hostile count buys
// nothing on top.
const perByte = 48

// hostileContext is a Changes payload of about size bytes with one change
// whose causal context claims an entry for every two bytes that follow,
// naming the devices of a dictionary of ndev again and again.
func hostileContext(size int) []byte { return hostileContextOver(size, 1) }

func hostileContextOver(size, ndev int) []byte {
	b := binary.AppendUvarint(nil, uint64(ndev))
	for i := 0; i < ndev; i++ {
		b = append(b, byte(i), byte(i>>8))
		b = append(b, make([]byte, 30)...)
	}
	b = binary.AppendUvarint(b, 1)                       // one change
	b = append(b, 0, 1, 0, 1)                            // origin 0, seq 1, offset 0, txn of 1
	b = binary.BigEndian.AppendUint64(b, 1)              // timestamp
	b = append(b, 0, 1, 'c', 1, 'k')                     // flags, collection, key
	b = binary.AppendUvarint(b, uint64(size-len(b)-4)/2) // the claimed context size
	for i := 0; len(b) < size; i++ {
		b = binary.AppendUvarint(b, uint64(i%ndev)) // device i, counter 1
		b = append(b, 1)
	}
	return b
}

// TestHostileContextBounded: a Changes frame of 4 MiB whose causal context
// claims two million entries is refused (its entries repeat devices) at a
// cost below its own size. It used to reserve a map for the whole claim:
// about 48 times the frame.
func TestHostileContextBounded(t *testing.T) {
	for _, ndev := range []int{1, 1000} {
		in := hostileContextOver(4<<20, ndev)
		var err error
		allocbound.Check(t, in, 1, allocbound.Slack, func() { _, err = DecodeChanges(in) })
		if err == nil {
			t.Fatalf("%d devices: a context naming them over and over decoded", ndev)
		}
	}
}

// TestFrameClaimBuysNothing: a frame header claiming 4 MiB followed by a
// few bytes makes ReadFrame allocate about what arrived, not the claim.
func TestFrameClaimBuysNothing(t *testing.T) {
	in := append([]byte{byte(TypeChanges), 0, 0x40, 0, 0}, "only this"...)
	var err error
	allocbound.Check(t, in, 2, readChunk+allocbound.Slack, func() { _, err = ReadFrame(bytes.NewReader(in), nil, 16<<20) })
	if err == nil {
		t.Fatal("a frame cut short was read")
	}
	// A whole frame larger than the first chunk still reads.
	payload := bytes.Repeat([]byte{7}, 3*readChunk+5)
	frame, _ := AppendFrame(nil, TypeChanges, payload)
	f, err := ReadFrame(bytes.NewReader(append(frame, 0xEE)), nil, 16<<20)
	if err != nil || !bytes.Equal(f.Payload, payload) {
		t.Fatalf("large frame: %v", err)
	}
}

// TestContextsWorstCase: the most a well-formed batch costs per byte (many
// tombstones with one-byte keys, each carrying a context over the whole
// dictionary) stays within perByte.
func TestContextsWorstCase(t *testing.T) {
	for _, ndev := range []int{1, 2, 8, 9, 15, 29, 57, 113, 129, 300} {
		var cs []core.Change
		ctx := core.VersionVector{}
		for i := 0; i < ndev; i++ {
			ctx[core.DeviceID{byte(i), byte(i >> 8), 1}] = 1
		}
		for i := 0; len(cs) < max(1, 20000/ndev); i++ {
			cs = append(cs, core.Change{Record: core.Record{Collection: "c", Key: "k", Origin: core.DeviceID{1}, Seq: uint64(i + 1), Context: ctx, Deleted: true}, TxnFirst: uint64(i + 1), TxnLen: 1})
		}
		in := AppendChanges(nil, cs)
		allocbound.Check(t, in, perByte, allocbound.Slack, func() {
			if _, err := DecodeChanges(in); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNonMinimalVarintRefused: every value has one encoding; an over-long
// varint (here 0 in two bytes) is refused wherever it appears.
func TestNonMinimalVarintRefused(t *testing.T) {
	if _, _, err := DecodeVV([]byte{0x80, 0x00}); err == nil {
		t.Fatal("version vector with a two-byte count of 0 decoded")
	}
	ok := AppendFetch(nil, "c", []string{"k"})
	if _, _, err := DecodeFetch(ok); err != nil {
		t.Fatal(err)
	}
	long := append([]byte{0x81, 0x00}, ok[1:]...) // the name's length, 1, in two bytes
	if _, _, err := DecodeFetch(long); err == nil {
		t.Fatal("fetch with a non-minimal length decoded")
	}
}

// TestFrameGrowsFromCallersBuffer: a frame a little larger than the
// caller's reused buffer grows from that buffer in one step, instead of
// doubling again from 64 KiB (which cost a sync receiver several
// allocations and copies per 2 MiB frame).
func TestFrameGrowsFromCallersBuffer(t *testing.T) {
	payload := bytes.Repeat([]byte{7}, 1<<20+1)
	frame, _ := AppendFrame(nil, TypeChanges, payload)
	buf := make([]byte, 0, 1<<20)
	r := bytes.NewReader(frame)
	allocs := testing.AllocsPerRun(5, func() {
		r.Reset(frame)
		f, err := ReadFrame(r, buf, 16<<20)
		if err != nil || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("read: %v", err)
		}
	})
	if allocs > 2 { // the grown buffer and the header, which escapes to the reader (7 before)
		t.Fatalf("%.0f allocations to read a frame one byte past the buffer", allocs)
	}
}
