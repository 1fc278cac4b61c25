package merkle

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/bits"

	"github.com/devicemesh/federation/core"
)

// Digest is a 32-byte SHA-256 output: a record digest, an entry hash, a node
// hash or a root.
type Digest [32]byte

// String returns the digest in hexadecimal.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// Domain separation tags: every hash this package computes starts with one,
// so a value of one kind can never be mistaken for another.
const (
	tagRecord = "devicemesh/merkle/record/v2\x00"
	tagPlace  = 0x01
	tagEntry  = 0x02
	tagRoot   = 0x03
	tagFP     = 0x04
)

// RecordDigest digests everything about a record that must converge:
// collection, key, value (through its digest, core.Record.Digest, so a
// stub, which carries the digest without the value, hashes exactly like
// the full version), tombstone and summary flags, timestamp, origin,
// sequence number and causal context. The context is canonicalised (sorted by device id,
// zero counters dropped, as Compare treats them as absent), and a nil value
// digests like an empty one, so two records with equal digests are the same
// version for every purpose of the SDK.
func RecordDigest(r core.Record) Digest {
	h := sha256.New()
	var buf [binary.MaxVarintLen64 + 8]byte
	writeBytes := func(b []byte) {
		n := binary.PutUvarint(buf[:], uint64(len(b)))
		h.Write(buf[:n])
		h.Write(b)
	}
	h.Write([]byte(tagRecord))
	writeBytes([]byte(r.Collection))
	writeBytes([]byte(r.Key))
	vd := r.Digest()
	h.Write(vd[:])
	var flags byte
	if r.Deleted {
		flags |= 1
	}
	if r.Summary {
		flags |= 2
	}
	h.Write([]byte{flags})
	binary.LittleEndian.PutUint64(buf[:8], uint64(r.Timestamp))
	h.Write(buf[:8])
	h.Write(r.Origin[:])
	binary.LittleEndian.PutUint64(buf[:8], r.Seq)
	h.Write(buf[:8])
	devs := r.Context.Devices() // sorted, non-zero counters only
	n := binary.PutUvarint(buf[:], uint64(len(devs)))
	h.Write(buf[:n])
	for _, d := range devs {
		h.Write(d[:])
		n = binary.PutUvarint(buf[:], r.Context[d])
		h.Write(buf[:n])
	}
	var out Digest
	h.Sum(out[:0])
	return out
}

// position places a key in the tree: the first 8 bytes of
// SHA-256(0x01 || key), big-endian. Its leading nibbles name the nodes on the
// key's path, so keys spread uniformly whatever their text.
func position[K string | []byte](key K) uint64 {
	var stack [128]byte
	b := append(stack[:0], tagPlace)
	b = append(b, key...)
	s := sha256.Sum256(b)
	return binary.BigEndian.Uint64(s[:8])
}

// EntryHash is the value a key contributes to the tree:
// SHA-256(0x02 || uvarint(len(key)) || key || digest). The length prefix
// keeps (key, digest) pairs from colliding by shifting bytes between them.
func EntryHash(key string, digest Digest) Digest {
	var stack [192]byte
	b := append(stack[:0], tagEntry)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = append(b, digest[:]...)
	return sha256.Sum256(b)
}

// fingerprint truncates a salted hash of x to n bytes (4 <= n <= 8) for the
// wire: SHA-256(0x04 || salt || x)[:n], read big-endian into the low bits.
// Salting per session means a truncation collision that hides a difference
// in one session does not recur in the next.
func fingerprint(salt uint64, n int, x *Digest) uint64 {
	var b [1 + 8 + 32]byte
	b[0] = tagFP
	binary.LittleEndian.PutUint64(b[1:9], salt)
	copy(b[9:], x[:])
	s := sha256.Sum256(b[:])
	return binary.BigEndian.Uint64(s[:8]) >> (64 - 8*uint(n))
}

// sum256 is an integer modulo 2^256 in four little-endian 64-bit limbs: the
// order-independent combination of entry hashes that a node stores.
type sum256 [4]uint64

func sumOf(d *Digest) sum256 {
	return sum256{
		binary.LittleEndian.Uint64(d[0:]),
		binary.LittleEndian.Uint64(d[8:]),
		binary.LittleEndian.Uint64(d[16:]),
		binary.LittleEndian.Uint64(d[24:]),
	}
}

func (s *sum256) add(o *sum256) {
	var c uint64
	s[0], c = bits.Add64(s[0], o[0], 0)
	s[1], c = bits.Add64(s[1], o[1], c)
	s[2], c = bits.Add64(s[2], o[2], c)
	s[3], _ = bits.Add64(s[3], o[3], c)
}

func (s *sum256) sub(o *sum256) {
	var b uint64
	s[0], b = bits.Sub64(s[0], o[0], 0)
	s[1], b = bits.Sub64(s[1], o[1], b)
	s[2], b = bits.Sub64(s[2], o[2], b)
	s[3], _ = bits.Sub64(s[3], o[3], b)
}

func (s *sum256) digest() Digest {
	var d Digest
	binary.LittleEndian.PutUint64(d[0:], s[0])
	binary.LittleEndian.PutUint64(d[8:], s[1])
	binary.LittleEndian.PutUint64(d[16:], s[2])
	binary.LittleEndian.PutUint64(d[24:], s[3])
	return d
}

// rootOf commits to a count and a sum: SHA-256(0x03 || u64le(count) || sum).
func rootOf(count int, s *sum256) Digest {
	var b [1 + 8 + 32]byte
	b[0] = tagRoot
	binary.LittleEndian.PutUint64(b[1:9], uint64(count))
	d := s.digest()
	copy(b[9:], d[:])
	return sha256.Sum256(b[:])
}
