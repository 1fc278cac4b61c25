package varint

import (
	"encoding/binary"
	"testing"
)

func TestUvarintMinimal(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 56, 1<<64 - 1} {
		b := binary.AppendUvarint(nil, v)
		got, n := Uvarint(append(b, 0xAA))
		if got != v || n != len(b) || Len(v) != len(b) {
			t.Fatalf("%d: got %d, %d bytes (Len %d), want %d bytes", v, got, n, Len(v), len(b))
		}
		if _, n := Uvarint(b[:len(b)-1]); n != 0 {
			t.Fatalf("%d truncated: n = %d, want 0", v, n)
		}
	}
	for _, b := range [][]byte{
		{0x80, 0x00},       // 0 in two bytes
		{0x81, 0x80, 0x00}, // 1 in three bytes
		{0xff, 0x00},       // 127 in two bytes
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},             // 0 in ten bytes
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},             // overflow
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // too long
	} {
		if v, n := Uvarint(b); n >= 0 || v != 0 {
			t.Fatalf("% x: got %d, n = %d, want a refusal", b, v, n)
		}
	}
}

func FuzzUvarint(f *testing.F) {
	f.Add([]byte{0x80, 0x01})
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n := Uvarint(b)
		if n <= 0 {
			return
		}
		if n != Len(v) || string(binary.AppendUvarint(nil, v)) != string(b[:n]) {
			t.Fatalf("% x decodes to %d in %d bytes: not its one encoding", b, v, n)
		}
	})
}
