package merkle

import (
	"testing"

	"github.com/devicemesh/federation/core"
)

func baseRecord() core.Record {
	var a, b core.DeviceID
	a[0], b[0] = 1, 2
	return core.Record{
		Collection: "notes",
		Key:        "k1",
		Value:      []byte("hello"),
		Timestamp:  core.MakeTimestamp(1700000000000, 3),
		Origin:     a,
		Seq:        7,
		Context:    core.VersionVector{a: 7, b: 2},
	}
}

func TestRecordDigestCoversEveryField(t *testing.T) {
	var c core.DeviceID
	c[0] = 3
	base := RecordDigest(baseRecord())
	tests := []struct {
		name   string
		modify func(r *core.Record)
	}{
		{"collection", func(r *core.Record) { r.Collection = "notes2" }},
		{"key", func(r *core.Record) { r.Key = "k2" }},
		{"value", func(r *core.Record) { r.Value = []byte("hellp") }},
		{"deleted", func(r *core.Record) { r.Deleted = true }},
		{"timestamp", func(r *core.Record) { r.Timestamp++ }},
		{"origin", func(r *core.Record) { r.Origin[31] = 9 }},
		{"seq", func(r *core.Record) { r.Seq++ }},
		{"context counter", func(r *core.Record) { r.Context[c] = 1 }},
		{"context dropped", func(r *core.Record) { r.Context = nil }},
		// Length prefixes keep bytes from moving between fields.
		{"collection/key boundary", func(r *core.Record) { r.Collection, r.Key = "notesk", "1" }},
		{"key/value boundary", func(r *core.Record) { r.Key, r.Value = "k1h", []byte("ello") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRecord()
			r.Context = r.Context.Clone()
			tc.modify(&r)
			if RecordDigest(r) == base {
				t.Fatalf("changing %s left the digest unchanged", tc.name)
			}
		})
	}
}

func TestRecordDigestCanonical(t *testing.T) {
	var a, b, z core.DeviceID
	a[0], b[0], z[0] = 1, 2, 9
	base := RecordDigest(baseRecord())
	tests := []struct {
		name   string
		modify func(r *core.Record)
	}{
		{"context rebuilt in other order", func(r *core.Record) { r.Context = core.VersionVector{b: 2, a: 7} }},
		{"zero counter ignored", func(r *core.Record) { r.Context[z] = 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRecord()
			r.Context = r.Context.Clone()
			tc.modify(&r)
			if RecordDigest(r) != base {
				t.Fatal("equivalent record digests differently")
			}
		})
	}
	r1, r2 := baseRecord(), baseRecord()
	r1.Value, r2.Value = nil, []byte{}
	r1.Deleted, r2.Deleted = true, true
	if RecordDigest(r1) != RecordDigest(r2) {
		t.Fatal("nil and empty tombstone values digest differently")
	}
}

func TestEntryHashSeparatesKeyAndDigest(t *testing.T) {
	d := digestOf(1)
	var shifted Digest
	copy(shifted[1:], d[:31])
	shifted[0] = 'b'
	if EntryHash("ab", d) == EntryHash("a", shifted) {
		t.Fatal("moving a byte from key to digest kept the entry hash")
	}
	if EntryHash("a", d) == EntryHash("a", digestOf(2)) || EntryHash("a", d) == EntryHash("b", d) {
		t.Fatal("entry hash ignores its inputs")
	}
}

func TestSum256(t *testing.T) {
	max := Digest{}
	for i := range max {
		max[i] = 0xff
	}
	one := Digest{1}
	tests := []struct {
		name string
		a, b Digest
		want Digest // a + b mod 2^256
	}{
		{"carry through every limb", max, one, Digest{}},
		{"small", Digest{2}, Digest{3}, Digest{5}},
		{"limb carry", Digest{0, 0, 0, 0, 0, 0, 0, 0xff}, Digest{0, 0, 0, 0, 0, 0, 0, 1}, Digest{0, 0, 0, 0, 0, 0, 0, 0, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, b := sumOf(&tc.a), sumOf(&tc.b)
			s.add(&b)
			if got := s.digest(); got != tc.want {
				t.Fatalf("sum = %x, want %x", got, tc.want)
			}
			s.sub(&b)
			if got := s.digest(); got != tc.a {
				t.Fatalf("sum - b = %x, want %x", got, tc.a)
			}
		})
	}
	// x + x must not cancel as it would with XOR.
	x := EntryHash("k", digestOf(1))
	s, v := sumOf(&x), sumOf(&x)
	s.add(&v)
	if s.digest() == (Digest{}) {
		t.Fatal("x + x = 0")
	}
}

func TestFingerprintSaltAndLength(t *testing.T) {
	h := EntryHash("k", digestOf(1))
	for n := MinFPLen; n <= MaxFPLen; n++ {
		if fp := fingerprint(1, n, &h); n < 8 && fp>>(8*uint(n)) != 0 {
			t.Fatalf("fingerprint of %d bytes has high bits: %x", n, fp)
		}
	}
	if fingerprint(1, 8, &h) == fingerprint(2, 8, &h) {
		t.Fatal("salt does not change the fingerprint")
	}
	if fingerprint(1, 8, &h)>>32 != fingerprint(1, 4, &h) {
		t.Fatal("short fingerprint is not a prefix of the long one")
	}
}
