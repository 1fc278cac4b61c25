package merkle

import (
	"fmt"
	"strings"
)

// Fanout is the number of children of every inner node: one per hex digit
// (nibble) of the key position.
const Fanout = 16

// MaxDepth is the depth of the deepest node: a 64-bit position has 16
// nibbles. Keys whose positions collide on all 64 bits share a node at
// MaxDepth, which is listed rather than expanded.
const MaxDepth = 16

// Prefix names a node of the tree: the range of key positions that start
// with its nibbles. The zero Prefix is the root, which covers every key.
// Prefixes compare with ==.
type Prefix struct {
	bits uint64 // nibbles, most significant first; unused low bits zero
	n    uint8  // number of nibbles, 0..MaxDepth
}

// MakePrefix returns the prefix of the given nibbles (each 0..15, at most
// MaxDepth of them). It panics on a bad nibble, which is a programmer error.
func MakePrefix(nibbles ...int) Prefix {
	if len(nibbles) > MaxDepth {
		panic("merkle: prefix longer than MaxDepth")
	}
	var p Prefix
	for _, x := range nibbles {
		if x < 0 || x >= Fanout {
			panic("merkle: nibble out of range")
		}
		p = p.Child(x)
	}
	return p
}

// PrefixOf returns the depth-n prefix (0 <= n <= MaxDepth) on key's path.
func PrefixOf(key string, n int) Prefix {
	return prefixOfPos(position(key), n)
}

func prefixOfPos(pos uint64, n int) Prefix {
	if n == 0 {
		return Prefix{}
	}
	return Prefix{bits: pos &^ (1<<(64-4*uint(n)) - 1), n: uint8(n)}
}

// Len returns the depth of the node: its number of nibbles.
func (p Prefix) Len() int { return int(p.n) }

// Nibble returns the i-th nibble (0 <= i < Len).
func (p Prefix) Nibble(i int) int { return nibble(p.bits, i) }

// Child returns the prefix of child i (0..15). Child of a MaxDepth prefix
// panics: there is none.
func (p Prefix) Child(i int) Prefix {
	if p.n >= MaxDepth {
		panic("merkle: child of a MaxDepth prefix")
	}
	return Prefix{bits: p.bits | uint64(i&0xf)<<(60-4*uint(p.n)), n: p.n + 1}
}

// descendant returns the j-th of the 16^k descendants k levels below p, in
// position order.
func (p Prefix) descendant(j, k int) Prefix {
	return Prefix{bits: p.bits | uint64(j)<<(64-4*uint(int(p.n)+k)), n: p.n + uint8(k)}
}

// contains reports whether a key position lies in p's range.
func (p Prefix) contains(pos uint64) bool {
	if p.n == 0 {
		return true
	}
	shift := 64 - 4*uint(p.n)
	return pos>>shift == p.bits>>shift
}

// String returns the nibbles in hexadecimal, or "root" for the root.
func (p Prefix) String() string {
	if p.n == 0 {
		return "root"
	}
	var b strings.Builder
	for i := 0; i < int(p.n); i++ {
		fmt.Fprintf(&b, "%x", p.Nibble(i))
	}
	return b.String()
}

func nibble(pos uint64, i int) int { return int(pos>>(60-4*uint(i))) & 0xf }
