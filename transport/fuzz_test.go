package transport

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// fuzzIdentity is a fixed identity so that fuzz runs are reproducible.
func fuzzIdentity(t testing.TB, b byte) *identity.Identity {
	id, err := identity.FromSeed(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type fuzzConn struct {
	io.Reader
	io.Writer
}

// FuzzRespond feeds arbitrary initiator bytes to the responder: it must
// return (never panic, never hang) and never accept a peer it cannot verify.
func FuzzRespond(f *testing.F) {
	hello := func(p wire.Pattern) []byte {
		b, _ := wire.AppendFrame(nil, wire.TypeHello, wire.Hello{Min: 1, Max: 1, Pattern: p}.Encode())
		return b
	}
	f.Add(hello(wire.PatternXX))
	f.Add(append(hello(wire.PatternIK), 0x02, 0, 0, 0, 4, 1, 2, 3, 4))
	f.Add(append(hello(wire.PatternXX), 0x02, 0, 0, 0, 32))
	binding := bytes.Repeat([]byte{7}, 32)
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newHandshaker(fuzzIdentity(t, 1), defaultVersions, allowAll)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		peer, err := h.respond(ctx, fuzzConn{bytes.NewReader(in), io.Discard}, binding)
		if err == nil && peer.id.IsZero() {
			t.Fatal("handshake accepted without an identity")
		}
	})
}

// FuzzInitiate feeds arbitrary responder bytes to the initiator, in both
// patterns.
func FuzzInitiate(f *testing.F) {
	f.Add([]byte{0x02, 0, 0, 0, 48}, false)
	f.Add([]byte{0x04, 0, 0, 0, 1, 2}, true)
	binding := bytes.Repeat([]byte{7}, 32)
	f.Fuzz(func(t *testing.T, in []byte, ik bool) {
		h := newHandshaker(fuzzIdentity(t, 1), defaultVersions, allowAll)
		var expect *core.PublicKey
		if ik {
			k := fuzzIdentity(t, 2).PublicKey()
			expect = &k
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := h.initiate(ctx, fuzzConn{bytes.NewReader(in), io.Discard}, binding, expect, core.DeviceID{}); err == nil {
			t.Fatal("initiator accepted bytes that no responder produced")
		}
	})
}
