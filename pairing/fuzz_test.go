package pairing

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/allocbound"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
)

// Decoders never panic, allocate at most perByte bytes per input byte
// (plus allocbound.Slack), and whatever they accept re-encodes to the same
// bytes (one encoding per message).

const perByte = 8

func FuzzDecodeHello(f *testing.F) {
	f.Add(hello{typ: registry.TypePhone, name: "Anna's phone"}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		var h hello
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { h, err = decodeHello(b) })
		if err == nil && !bytes.Equal(h.encode(), b) {
			t.Fatalf("hello %x re-encodes as %x", b, h.encode())
		}
	})
}

func FuzzDecodeChallenge(f *testing.F) {
	f.Add(challenge{typ: registry.TypeLaptop, name: "laptop"}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		var c challenge
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { c, err = decodeChallenge(b) })
		if err == nil && !bytes.Equal(c.encode(), b) {
			t.Fatalf("challenge %x re-encodes as %x", b, c.encode())
		}
	})
}

func FuzzDecodeHandover(f *testing.F) {
	seed, _ := Handover{Registry: []byte("ops"), Secret: []byte("secret")}.encode()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Handover
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { h, err = decodeHandover(b) })
		if err != nil {
			return
		}
		again, err := h.encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("handover %x re-encodes as %x (%v)", b, again, err)
		}
	})
}

func FuzzDecodeSmall(f *testing.F) {
	f.Add([]byte{1})
	f.Add([]byte{8})
	f.Fuzz(func(t *testing.T, b []byte) {
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { _, _ = decodeRefuse(b); _, _ = decodeVerdict(b) })
		if c, err := decodeRefuse(b); err == nil && (c.err() == nil || !bytes.Equal(encodeRefuse(c), b)) {
			t.Fatalf("refusal %x accepted as %v", b, c)
		}
		if ok, err := decodeVerdict(b); err == nil && !bytes.Equal(encodeVerdict(ok), b) {
			t.Fatalf("verdict %x accepted as %v", b, ok)
		}
	})
}

// fuzzPeers are the fixed devices and session of the protocol fuzzers.
type fuzzPeers struct {
	inviter, joiner *identity.Identity
	hash            []byte
	inv             registry.Invitation
	now             time.Time
}

func newFuzzPeers(f *testing.F) fuzzPeers { return fuzzPeersFor(f) }

func fuzzPeersFor(f testing.TB) fuzzPeers {
	inviter, err := identity.FromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	joiner, err := identity.FromSeed(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0).UTC()
	inv, err := registry.NewInvitation(inviter, nil, now.Add(time.Minute), bytes.NewReader(make([]byte, 9)))
	if err != nil {
		f.Fatal(err)
	}
	return fuzzPeers{inviter: inviter, joiner: joiner, hash: bytes.Repeat([]byte{7}, 32), inv: inv, now: now}
}

func (p fuzzPeers) binding() binding {
	return binding{hash: p.hash, joiner: p.joiner.DeviceID(), inviter: p.inviter.DeviceID()}
}

// validHello is a hello that proves the code on the fuzz session.
func (p fuzzPeers) validHello() []byte {
	code, _ := registry.ParseCode(p.inv.Code())
	h := hello{typ: registry.TypePhone, name: "phone", commit: commitment([nonceSize]byte{})}
	h.proof = joinerProof(codeKey(code), p.binding(), h)
	b, _ := wire.AppendFrame(nil, typeHello, h.encode())
	return b
}

// FuzzHost feeds arbitrary joiner bytes to Host. It never panics, and
// unless the bytes start with a hello whose proof verifies, all the
// inviter sends is at most one Refuse frame.
func FuzzHost(f *testing.F) {
	p := newFuzzPeers(f)
	f.Add(p.validHello())
	f.Add(append(p.validHello(), 0x32, 0, 0, 0, 32))
	f.Add([]byte{0x30, 0, 0, 0, 3, 1, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		tracker := registry.NewTracker(0)
		if err := tracker.Add(p.inv); err != nil {
			t.Fatal(err)
		}
		st := &memStream{in: bytes.NewReader(in)}
		_, err := Host(context.Background(), fakeSession{peer: p.joiner, hash: p.hash}, st, HostParams{
			Identity: p.inviter, Invitation: p.inv, Tracker: tracker,
			Approve: func(context.Context, Request) (bool, error) { return true, nil },
			Now:     func() time.Time { return p.now },
		})
		if err == nil {
			return // only a full, valid exchange gets here
		}
		out := st.out.Bytes()
		if proves(p, in) {
			return
		}
		if len(out) > 0 {
			fr, ferr := wire.ReadFrame(bytes.NewReader(out), nil, 0)
			if ferr != nil || fr.Type != typeRefuse || len(out) != wire.HeaderSize+1 {
				t.Fatalf("inviter sent %x to a joiner without a valid proof", out)
			}
		}
	})
}

// proves reports whether in starts with a hello frame whose proof verifies
// on the fuzz session.
func proves(p fuzzPeers, in []byte) bool {
	fr, err := wire.ReadFrame(bytes.NewReader(in), nil, maxSmallFrame)
	if err != nil || fr.Type != typeHello {
		return false
	}
	h, err := decodeHello(fr.Payload)
	if err != nil {
		return false
	}
	code, _ := registry.ParseCode(p.inv.Code())
	want := joinerProof(codeKey(code), p.binding(), h)
	return hmac.Equal(want[:], h.proof[:])
}

// FuzzJoin feeds arbitrary inviter bytes to Join. It never panics, never
// reveals its nonce to an inviter whose proof fails, and returns a
// handover only without error.
func FuzzJoin(f *testing.F) {
	p := newFuzzPeers(f)
	code, _ := registry.ParseCode(p.inv.Code())
	c := challenge{typ: registry.TypeLaptop, name: "laptop"}
	c.proof = inviterProof(codeKey(code), p.binding(), commitment([nonceSize]byte{}), c)
	valid, _ := wire.AppendFrame(nil, typeChallenge, c.encode())
	welcome, _ := Handover{Registry: []byte("r"), Secret: []byte("s")}.encode()
	full, _ := wire.AppendFrame(append([]byte{}, valid...), typeWelcome, welcome)
	f.Add(valid)
	f.Add(full)
	f.Add(refusalFrame(refuseCodeUsed))
	f.Fuzz(func(t *testing.T, in []byte) {
		st := &memStream{in: bytes.NewReader(in)}
		res, err := Join(context.Background(), fakeSession{peer: p.inviter, hash: p.hash}, st, JoinParams{
			Identity: p.joiner, Name: "phone", Type: registry.TypePhone, Code: code,
			Rand: bytes.NewReader(make([]byte, nonceSize)),
		})
		if err != nil && (res.Handover.Registry != nil || res.Handover.Secret != nil) {
			t.Fatalf("handover returned with error %v", err)
		}
		if errors.Is(err, ErrInviterUnproven) && bytes.Contains(st.out.Bytes(), []byte{byte(typeReveal), 0, 0, 0, nonceSize}) {
			t.Fatalf("joiner revealed its nonce to an unproven inviter: %x", st.out.Bytes())
		}
	})
}
