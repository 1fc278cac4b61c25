package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

func signer(t testing.TB, seed byte) (core.PublicKey, func([]byte) []byte) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	var pub core.PublicKey
	copy(pub[:], priv.Public().(ed25519.PublicKey))
	return pub, func(m []byte) []byte { return ed25519.Sign(priv, m) }
}

// TestSignedHeadRoundTripAndForgery: a signed head survives its encoding
// and verifies; any changed field, a signature by another key or a
// malformed encoding is refused.
func TestSignedHeadRoundTripAndForgery(t *testing.T) {
	pub, sign := signer(t, 1)
	_, otherSign := signer(t, 2)
	h := SignedHead{Key: pub, Epoch: 3, Head: Head{Seq: 42, Hash: Hash{7}}, Prev: Head{Seq: 40, Hash: Hash{6}}, At: time.UnixMilli(1_700_000_000_123)}
	h.Sign(sign)
	b := h.Marshal()
	if len(b) != HeadSize {
		t.Fatalf("encoding is %d bytes, want %d", len(b), HeadSize)
	}
	got, err := UnmarshalHead(b)
	if err != nil || got.Verify() != nil || got.Epoch != 3 || got.Head != h.Head || got.Prev != h.Prev || !got.At.Equal(h.At) || got.Device() != core.DeviceIDFromKey(pub) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := 0; i < HeadSize; i++ {
		bad := bytes.Clone(b)
		bad[i] ^= 0x10
		g, err := UnmarshalHead(bad)
		if err == nil {
			err = g.Verify()
		}
		if err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	forged := h
	forged.Sign(otherSign)
	if err := forged.Verify(); !errors.Is(err, ErrForgedHead) || !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("head signed by another key: %v", err)
	}
	if _, err := UnmarshalHead(b[:HeadSize-1]); !errors.Is(err, ErrMalformedHead) {
		t.Fatalf("truncated head: %v", err)
	}
}

// TestHeadOrderAndExtends: peers keep the higher head; a newer head extends
// the held one only if it supersedes it (or a later one) with its hash.
func TestHeadOrderAndExtends(t *testing.T) {
	held := SignedHead{Head: Head{Seq: 10, Hash: Hash{1}}}
	cases := []struct {
		name string
		next SignedHead
		want bool
	}{
		{"supersedes held", SignedHead{Head: Head{Seq: 20}, Prev: held.Head}, true},
		{"supersedes a later head", SignedHead{Head: Head{Seq: 30}, Prev: Head{Seq: 20}}, true},
		{"forks at held", SignedHead{Head: Head{Seq: 20}, Prev: Head{Seq: 10, Hash: Hash{2}}}, false},
		{"lost held", SignedHead{Head: Head{Seq: 20}, Prev: Head{Seq: 5}}, false},
		{"no previous head", SignedHead{Head: Head{Seq: 20}}, false},
	}
	for _, c := range cases {
		if got := Extends(held, c.next); got != c.want {
			t.Errorf("%s: Extends = %v, want %v", c.name, got, c.want)
		}
	}
	newer := SignedHead{Epoch: 1, Head: Head{Seq: 3}, Prev: Head{Seq: 2}}
	if !Extends(held, newer) || Extends(newer, SignedHead{Head: Head{Seq: 40}, Prev: Head{Seq: 30}}) {
		t.Error("a head of a newer epoch must extend any older one, and an older epoch's head never extends a newer one")
	}
	if CompareSigned(newer, SignedHead{Head: Head{Seq: 99}}) <= 0 || CompareSigned(SignedHead{Epoch: 1, Head: Head{Seq: 4}}, newer) <= 0 || CompareSigned(newer, newer) != 0 {
		t.Fatal("CompareSigned does not order by epoch, then count")
	}
	if CompareHeads(Head{Seq: 2}, Head{Seq: 1, Hash: Hash{9}}) <= 0 || CompareHeads(Head{Seq: 1, Hash: Hash{1}}, Head{Seq: 1, Hash: Hash{2}}) >= 0 || CompareHeads(held.Head, held.Head) != 0 {
		t.Fatal("CompareHeads does not order by count, then hash")
	}
}

// TestCheckHead: the log holds the heads it produced; a head beyond its
// end or with another hash at its position is a *TamperError.
func TestCheckHead(t *testing.T) {
	ctx := context.Background()
	l := New(NewMemory(), Options{})
	var heads []Head
	for i := 0; i < 5; i++ {
		e, err := l.Append(ctx, Entry{Kind: KindBatchSent})
		if err != nil {
			t.Fatal(err)
		}
		heads = append(heads, Head{Seq: e.Seq, Hash: e.Hash})
	}
	for _, h := range append(heads, Head{}) {
		if err := l.CheckHead(ctx, h); err != nil {
			t.Fatalf("head %d: %v", h.Seq, err)
		}
	}
	var te *TamperError
	if err := l.CheckHead(ctx, Head{Seq: 6}); !errors.As(err, &te) || te.Seq != 6 {
		t.Fatalf("head beyond the end: %v", err)
	}
	if err := l.CheckHead(ctx, Head{Seq: 3, Hash: Hash{1}}); !errors.Is(err, ErrTampered) {
		t.Fatalf("head with another hash: %v", err)
	}
}

// FuzzUnmarshalHead: hostile bytes never panic; what parses re-encodes to
// the input.
func FuzzUnmarshalHead(f *testing.F) {
	pub, sign := signer(f, 3)
	h := SignedHead{Key: pub, Head: Head{Seq: 1}, At: time.UnixMilli(1)}
	h.Sign(sign)
	f.Add(h.Marshal())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := UnmarshalHead(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedHead) {
				t.Fatalf("error %v does not wrap ErrMalformedHead", err)
			}
			return
		}
		if got := g.Marshal(); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
