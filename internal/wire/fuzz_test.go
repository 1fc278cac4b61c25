package wire

import (
	"bytes"
	"testing"

	"github.com/devicemesh/federation/internal/allocbound"
)

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 3, 'a', 'b', 'c'}, 1024)
	f.Add([]byte{0x11, 0, 0x08, 0, 0, 'a'}, 1<<20) // claims 512 KiB, carries 1 byte
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		limit %= 16 << 20 // keep the fuzzer from asking for huge limits
		var fr Frame
		var err error
		// A header's claim buys no memory until the payload arrives.
		allocbound.Check(t, in, 2, readChunk+allocbound.Slack, func() { fr, err = ReadFrame(bytes.NewReader(in), nil, limit) })
		if err != nil {
			return
		}
		if len(fr.Payload) > effectiveLimit(limit) || len(fr.Payload)+HeaderSize > len(in) {
			t.Fatalf("payload of %d bytes from %d input bytes, limit %d", len(fr.Payload), len(in), limit)
		}
		again, err := AppendFrame(nil, fr.Type, fr.Payload)
		if err != nil || !bytes.Equal(again, in[:len(again)]) {
			t.Fatalf("re-encoding differs: %x vs %x (%v)", again, in, err)
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	f.Add(Hello{Min: 1, Max: 1, Pattern: PatternXX}.Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		var h Hello
		var err error
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { h, err = DecodeHello(in) })
		if err == nil && !bytes.Equal(h.Encode(), in) {
			t.Fatalf("hello %+v re-encodes differently", h)
		}
	})
}

func FuzzDecodePayload(f *testing.F) {
	f.Add(Payload{Version: 1}.Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		var p Payload
		var err error
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { p, err = DecodePayload(in) })
		if err == nil && !bytes.Equal(p.Encode(), in) {
			t.Fatalf("payload %+v re-encodes differently", p)
		}
	})
}

func FuzzDecodeReject(f *testing.F) {
	f.Add(Reject{Code: RejectUnauthorized, Reason: "revoked"}.Encode())
	f.Add(Reject{Code: RejectUnauthorized, Reason: "revoked", Notice: []byte("signed operation")}.Encode())
	f.Fuzz(func(t *testing.T, in []byte) {
		var r Reject
		var err error
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { r, err = DecodeReject(in) })
		if err == nil && !bytes.Equal(r.Encode(), in) {
			t.Fatalf("reject %+v re-encodes differently", r)
		}
	})
}

func FuzzDecodeStreamOpen(f *testing.F) {
	f.Add(EncodeStreamOpen(1), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, want uint16) {
		var err error
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { err = DecodeStreamOpen(in, want) })
		if err == nil && !bytes.Equal(EncodeStreamOpen(want), in) {
			t.Fatalf("stream header %x accepted for version %d", in, want)
		}
	})
}
