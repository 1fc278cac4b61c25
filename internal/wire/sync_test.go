package wire

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
)

func sampleChanges() []core.Change {
	a, b := core.DeviceID{1}, core.DeviceID{2}
	return []core.Change{
		{Record: core.Record{Collection: "profile", Key: "name", Value: []byte("Ada"), Timestamp: core.MakeTimestamp(1700000000000, 3), Origin: a, Seq: 7, Context: core.VersionVector{a: 7, b: 2}}, TxnFirst: 7, TxnLen: 2},
		{Record: core.Record{Collection: "profile", Key: "old", Deleted: true, Timestamp: core.MakeTimestamp(1700000000000, 3), Origin: a, Seq: 8, Context: core.VersionVector{a: 8, b: 2}}, TxnFirst: 7, TxnLen: 2},
		{Record: core.Record{Collection: "notes", Key: "", Value: []byte{}, Timestamp: 1, Origin: b, Seq: 1, Context: core.VersionVector{b: 1}}, TxnFirst: 1, TxnLen: 1},
	}
}

func TestChangesRoundTrip(t *testing.T) {
	in := sampleChanges()
	out, err := DecodeChanges(AppendChanges(nil, in))
	require.NoError(t, err)
	require.Equal(t, in, out)
}

func TestVVRoundTrip(t *testing.T) {
	vv := core.VersionVector{{1}: 5, {9}: 1 << 40, {3}: 0}
	got, rest, err := DecodeVV(append(AppendVV(nil, vv), 0xAA))
	require.NoError(t, err)
	require.Equal(t, []byte{0xAA}, rest)
	require.Equal(t, core.VersionVector{{1}: 5, {9}: 1 << 40}, got, "zero counters are not sent")
}

func TestDecodeChangesRejectsHostileInput(t *testing.T) {
	good := AppendChanges(nil, sampleChanges())
	for name, b := range map[string][]byte{
		"truncated":         good[:len(good)-1],
		"trailing":          append(append([]byte{}, good...), 0),
		"huge count":        {0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"index out of dict": AppendChanges(nil, nil)[:0],
	} {
		if name == "index out of dict" {
			b = []byte{0, 1, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'c', 0, 0, 0}
		}
		_, err := DecodeChanges(b)
		require.ErrorIs(t, err, core.ErrProtocol, name)
	}
}

func FuzzDecodeChanges(f *testing.F) {
	f.Add(AppendChanges(nil, sampleChanges()))
	f.Add(AppendChanges(nil, nil))
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(hostileContext(4 << 10))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cs []core.Change
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { cs, err = DecodeChanges(b) })
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes the same.
		again, err := DecodeChanges(AppendChanges(nil, cs))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if len(again) != len(cs) {
			t.Fatalf("round trip changed the batch")
		}
	})
}

func FuzzDecodeVV(f *testing.F) {
	f.Add(AppendVV(nil, core.VersionVector{{1}: 5, {2}: 7}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var vv core.VersionVector
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { vv, _, err = DecodeVV(b) })
		if err != nil {
			return
		}
		if _, _, err := DecodeVV(AppendVV(nil, vv)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestRepairPayloadsRoundTrip(t *testing.T) {
	roots := map[string][32]byte{"b": {2}, "a": {1}}
	got, err := DecodeRoots(AppendRoots(nil, roots))
	require.NoError(t, err)
	require.Equal(t, roots, got)

	c, keys, err := DecodeFetch(AppendFetch(nil, "notes", []string{"x", "", "y\x00"}))
	require.NoError(t, err)
	require.Equal(t, "notes", c)
	require.Equal(t, []string{"x", "", "y\x00"}, keys)

	_, _, err = DecodeFetch(AppendFetch(nil, "notes", []string{"x", "y", "x"}))
	require.ErrorIs(t, err, core.ErrProtocol, "a key asked twice")

	c, rest, err := DecodeNamed(AppendNamed(nil, "profile", []byte{1, 2}))
	require.NoError(t, err)
	require.Equal(t, "profile", c)
	require.Equal(t, []byte{1, 2}, rest)

	vv := core.VersionVector{{1}: 3}
	gotVV, pushed, err := DecodeRepaired(binary.AppendUvarint(AppendVV(nil, vv), 300))
	require.NoError(t, err)
	require.Equal(t, vv, gotVV)
	require.Equal(t, uint64(300), pushed)
	for _, bad := range [][]byte{AppendVV(nil, vv), append(AppendVV(nil, vv), 0x80, 0x00), append(AppendVV(nil, vv), 1, 1)} {
		_, _, err := DecodeRepaired(bad)
		require.ErrorIs(t, err, core.ErrProtocol)
	}

	for _, bad := range [][]byte{{5}, {1, 0}, {1, 1, 'a'}} {
		_, err := DecodeRoots(bad)
		require.ErrorIs(t, err, core.ErrProtocol)
		_, _, err = DecodeFetch(bad)
		require.ErrorIs(t, err, core.ErrProtocol)
	}
}

func FuzzDecodeRepair(f *testing.F) {
	f.Add(AppendRoots(nil, map[string][32]byte{"a": {1}}))
	f.Add(AppendFetch(nil, "c", []string{"k"}))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	f.Add(AppendFetch(nil, "c", keys))
	f.Fuzz(func(t *testing.T, b []byte) {
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _ = DecodeRoots(b) })
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _, _ = DecodeFetch(b) })
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _, _ = DecodeNamed(b) })
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _, _ = DecodeRepaired(b) })
	})
}

func TestSyncHelloRoundTrip(t *testing.T) {
	vv := core.VersionVector{core.DeviceID{1}: 5, core.DeviceID{2}: 9}
	for _, h := range []SyncHello{
		{VV: vv},
		{VV: vv, Instance: 42},
		{VV: core.VersionVector{}, Instance: 7, Addrs: []string{"127.0.0.1:4000", "[::1]:4000"}},
	} {
		got, err := DecodeSyncHello(AppendSyncHello(nil, h))
		if err != nil {
			t.Fatal(err)
		}
		if got.Instance != h.Instance || got.VV.Compare(h.VV) != core.Equal || len(got.Addrs) != len(h.Addrs) {
			t.Fatalf("round trip: got %+v, want %+v", got, h)
		}
		for i := range h.Addrs {
			if got.Addrs[i] != h.Addrs[i] {
				t.Fatalf("address %d: %q, want %q", i, got.Addrs[i], h.Addrs[i])
			}
		}
	}
	// A plain VV (an older peer's hello) decodes with no announcement.
	if h, err := DecodeSyncHello(AppendVV(nil, vv)); err != nil || h.Instance != 0 || h.Addrs != nil {
		t.Fatalf("plain hello: %+v, %v", h, err)
	}
	// Out-of-bounds announcements are refused.
	many := SyncHello{VV: vv, Instance: 1}
	bad := binary.AppendUvarint(binary.BigEndian.AppendUint64(AppendVV(nil, vv), 1), MaxHelloAddrs+1)
	for range MaxHelloAddrs + 1 {
		bad = appendString(bad, "h:1")
	}
	for name, b := range map[string][]byte{
		"too many":  bad,
		"empty":     append(binary.BigEndian.AppendUint64(AppendVV(nil, vv), 1), 1, 0),
		"too long":  appendString(append(binary.BigEndian.AppendUint64(AppendVV(nil, vv), 1), 1), strings.Repeat("x", MaxAddrLen+1)),
		"trailing":  append(AppendSyncHello(nil, many), 0),
		"truncated": binary.BigEndian.AppendUint64(AppendVV(nil, vv), 1)[:len(AppendVV(nil, vv))+3],
	} {
		if _, err := DecodeSyncHello(b); !errors.Is(err, core.ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

func FuzzDecodeSyncHello(f *testing.F) {
	f.Add(AppendSyncHello(nil, SyncHello{VV: core.VersionVector{core.DeviceID{1}: 3}, Instance: 9, Addrs: []string{"127.0.0.1:1"}}))
	f.Add(AppendVV(nil, core.VersionVector{}))
	f.Fuzz(func(t *testing.T, in []byte) {
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { _, _ = DecodeSyncHello(in) })
		h, err := DecodeSyncHello(in)
		if err != nil {
			if !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if len(h.Addrs) > MaxHelloAddrs {
			t.Fatalf("%d addresses accepted", len(h.Addrs))
		}
		for _, a := range h.Addrs {
			if a == "" || len(a) > MaxAddrLen {
				t.Fatalf("address of %d bytes accepted", len(a))
			}
		}
		again, err := DecodeSyncHello(AppendSyncHello(nil, h))
		if err != nil || again.Instance != h.Instance || len(again.Addrs) != len(h.Addrs) || again.VV.Compare(h.VV) != core.Equal {
			t.Fatalf("hello %+v does not survive re-encoding: %+v, %v", h, again, err)
		}
	})
}
