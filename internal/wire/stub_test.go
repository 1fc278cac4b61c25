package wire

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
)

func stubChanges() []core.Change {
	a := core.DeviceID{1}
	full := core.Record{Collection: "conversations", Key: "m1", Value: []byte("a secret message"), Timestamp: 5, Origin: a, Seq: 3, Context: core.VersionVector{a: 3}}
	stub := full.AsStub()
	sum := core.Record{Collection: "conversations", Key: "s1", Value: []byte("summary"), Summary: true, Timestamp: 6, Origin: a, Seq: 4, Context: core.VersionVector{a: 4}}
	return []core.Change{
		{Record: stub, TxnFirst: 3, TxnLen: 1},
		{Record: sum, TxnFirst: 4, TxnLen: 1},
		{Record: sum.AsStub(), TxnFirst: 4, TxnLen: 1},
	}
}

// TestStubRoundTrip: a stub travels with its size, digest and flags and
// without its value.
func TestStubRoundTrip(t *testing.T) {
	in := stubChanges()
	b := AppendChanges(nil, in)
	require.False(t, bytes.Contains(b, []byte("a secret message")), "a stub carries no value")
	out, err := DecodeChanges(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
	require.True(t, out[0].Stub)
	require.Equal(t, len("a secret message"), out[0].ValueSize)
	require.Equal(t, core.ValueDigest([]byte("a secret message")), out[0].ValueDigest)
	require.True(t, out[1].Summary && !out[1].Stub)
	require.True(t, out[2].Summary && out[2].Stub)
}

// TestStubRefusals: unknown flags, a tombstone stub and a size beyond the
// value limit are protocol errors.
func TestStubRefusals(t *testing.T) {
	one := func(flags byte, size uint64) []byte {
		b := binary.AppendUvarint(nil, 1)
		b = append(b, make([]byte, 32)...)
		b = append(b, 1, 0, 1, 0, 1)            // one change: origin 0, seq 1, offset 0, txn of 1
		b = binary.BigEndian.AppendUint64(b, 1) // timestamp
		b = append(b, flags, 1, 'c', 1, 'k', 0) // flags, collection, key, empty context
		b = binary.AppendUvarint(b, size)
		return append(b, make([]byte, 32)...)
	}
	_, err := DecodeChanges(one(flagStub, 10))
	require.NoError(t, err)
	for name, b := range map[string][]byte{
		"unknown flag":   one(1<<3|flagStub, 10),
		"tombstone stub": one(flagStub|flagDeleted, 10),
		"huge stub":      one(flagStub, core.MaxValueLen+1),
		"short digest":   one(flagStub, 10)[:len(one(flagStub, 10))-1],
	} {
		_, err := DecodeChanges(b)
		require.ErrorIs(t, err, core.ErrProtocol, name)
	}
}

func TestValuesRoundTrip(t *testing.T) {
	in := []Value{{Key: "a", Held: true, Origin: core.DeviceID{7}, Seq: 300, Value: []byte("x")}, {Key: "b"}, {Key: "", Held: true, Value: []byte{}}}
	c, out, err := DecodeValues(AppendValues(nil, "media", in))
	require.NoError(t, err)
	require.Equal(t, "media", c)
	require.Equal(t, in, out)
	good := AppendValues(nil, "media", in)
	for name, b := range map[string][]byte{
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
		"no collection":  AppendValues(nil, "", in),
		"bad held flag":  {1, 'c', 1, 0, 2},
		"count too big":  {1, 'c', 0xff, 0xff, 0x03, 0, 0},
		"value too long": append(append([]byte{1, 'c', 1, 0, 1}, make([]byte, 33)...), binary.AppendUvarint(nil, core.MaxValueLen+1)...),
		"short origin":   {1, 'c', 1, 0, 1, 0, 0},
	} {
		_, _, err := DecodeValues(b)
		require.ErrorIs(t, err, core.ErrProtocol, name)
	}
}

// TestValuesClaimBuysNothing: a Values payload claiming a million answers
// allocates in proportion to what it carries.
func TestValuesClaimBuysNothing(t *testing.T) {
	in := append([]byte{1, 'c'}, binary.AppendUvarint(nil, 1<<20)...)
	in = append(in, bytes.Repeat([]byte{0, 0}, 1000)...)
	var err error
	allocbound.Check(t, in, perByte, allocbound.Slack, func() { _, _, err = DecodeValues(in) })
	require.ErrorIs(t, err, core.ErrProtocol)
}

func FuzzDecodeValues(f *testing.F) {
	f.Add(AppendValues(nil, "c", []Value{{Key: "k", Held: true, Value: []byte("v")}, {Key: "m"}}))
	f.Add(AppendChanges(nil, stubChanges()))
	f.Add([]byte{1, 'c', 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var vals []Value
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, vals, err = DecodeValues(b) })
		if err == nil {
			c, _, _ := DecodeValues(b)
			if !bytes.Equal(AppendValues(nil, c, vals), b) {
				t.Fatalf("values re-encode differently")
			}
		}
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _ = DecodeChanges(b) })
	})
}
