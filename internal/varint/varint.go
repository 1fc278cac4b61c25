// Package varint is the module's one decoder of unsigned varints: the
// LEB128 encoding that encoding/binary's AppendUvarint and PutUvarint
// write, with one rule on top: a value has exactly one encoding, so an
// over-long (non-minimal) varint is refused like a truncated or
// overflowing one. Every wire format of the module (internal/wire, merkle,
// crdt, conflict) reads its varints here; encoders keep using
// encoding/binary, whose output is always minimal.
package varint

import "encoding/binary"

// MaxLen is the longest encoding of a uint64.
const MaxLen = binary.MaxVarintLen64

// Uvarint decodes the varint at the start of b and returns it with the
// number of bytes read. n is 0 when b ends inside the varint, and negative
// when the encoding overflows 64 bits or is not minimal (it has a
// redundant trailing zero group, such as 0x80 0x00 for 0).
func Uvarint(b []byte) (v uint64, n int) {
	v, n = binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		return 0, -n // the last group adds nothing: a shorter encoding exists
	}
	return v, n
}

// Len returns the length of the (minimal) encoding of v.
func Len(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
