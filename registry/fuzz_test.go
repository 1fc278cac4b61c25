package registry

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
)

// seedOps returns one signed operation of every kind.
func seedOps(t testing.TB) []Op {
	m := newMesh(t)
	a := ident(t, 1)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(1), Device{PublicKey: a.PublicKey(), Name: "Annas-phone", Type: TypePhone, Trust: TrustTrusted, Policy: []byte(`{}`)}))
	must(t, m.s)(m.s.NewRename(a, ts(2), a.DeviceID(), "renamed"))
	must(t, m.s)(m.s.NewSetPolicy(a, ts(3), a.DeviceID(), []byte(`{"m":1}`)))
	must(t, m.s)(m.s.NewRotation(m.owner, ts(4), rand.NewChaCha8([32]byte{})))
	must(t, m.s)(m.s.NewRevoke(m.owner, ts(5), a.DeviceID()))
	return m.s.Ops()
}

// perByte bounds what the decoders of this package (UnmarshalOp,
// ParseInvitation) may allocate per input byte, plus allocbound.Slack.
const perByte = 8

// FuzzUnmarshalOp feeds hostile bytes from the network to the operation
// decoder: it must never panic; what it accepts must re-encode to the same
// bytes, and must pass State.Apply only if correctly signed.
func FuzzUnmarshalOp(f *testing.F) {
	for _, op := range seedOps(f) {
		f.Add(op.Marshal())
	}
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var op Op
		var err error
		allocbound.Check(t, b, perByte, allocbound.Slack, func() { op, err = UnmarshalOp(b) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !bytes.Equal(op.Marshal(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if err := op.check(); err != nil && !errors.Is(err, core.ErrUnauthorized) {
			t.Fatalf("check of a decoded op: %v", err)
		}
	})
}

// FuzzParseInvitation feeds hostile QR payloads to the parser: it must
// never panic, and what it accepts must round-trip.
func FuzzParseInvitation(f *testing.F) {
	inv, err := NewInvitation(ident(f, 1), []string{"192.0.2.1:4242"}, time.Unix(1_800_000_000, 0), rand.NewChaCha8([32]byte{}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(inv.String())
	f.Add("devicemesh:pair?v=1")
	f.Add("devicemesh:pair?c=%zz")
	f.Fuzz(func(t *testing.T, s string) {
		var inv Invitation
		var err error
		// Parsing has a fixed cost (the query, the key's curve point),
		// hence the larger slack.
		allocbound.Check(t, []byte(s), perByte, 4*allocbound.Slack, func() { inv, err = ParseInvitation(s) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrMalformedCode) {
				t.Fatalf("error %v is not a malformed-input error", err)
			}
			return
		}
		again, err := ParseInvitation(inv.String())
		if err != nil || again.String() != inv.String() {
			t.Fatalf("accepted invitation does not round-trip: %v", err)
		}
	})
}
