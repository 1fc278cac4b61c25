package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// These tests run against both the QUIC and the in-memory transport: the
// authentication semantics must be the same.

func TestKnownPeersConnect(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			echo(t, server)
			for _, peer := range []core.DeviceID{{}, b.DeviceID()} { // XX, then IK
				s, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), peer)
				if err != nil {
					t.Fatalf("dial (peer %v): %v", !peer.IsZero(), err)
				}
				if s.Peer() != b.DeviceID() || s.PeerKey() != b.PublicKey() {
					t.Fatalf("session peer = %s, want %s", s.Peer().Short(), b.DeviceID().Short())
				}
				got, err := roundTrip(t, s, "state vector")
				if err != nil || got != "state vector" {
					t.Fatalf("round trip = %q, %v", got, err)
				}
				_ = s.Close(nil)
			}
		})
	}
}

func TestServerSeesAuthenticatedPeer(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			go func() { _, _ = client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID()) }()
			s, err := server.Accept(ctxT(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if s.Peer() != a.DeviceID() || s.PeerKey() != a.PublicKey() {
				t.Fatalf("server sees %s, want %s", s.Peer().Short(), a.DeviceID().Short())
			}
		})
	}
}

func TestUnknownOrRevokedDeviceRefused(t *testing.T) {
	for _, k := range kinds() {
		for _, peer := range []string{"XX", "IK"} {
			t.Run(k.name+"/"+peer, func(t *testing.T) {
				a, b, stranger := newIdentity(t), newIdentity(t), newIdentity(t)
				allow := NewAllowList(a.PublicKey())
				server := k.listen(t, b, allow, versionRange{}, Limits{})
				target := core.DeviceID{}
				if peer == "IK" {
					target = b.DeviceID()
				}
				// The stranger trusts the server; the server does not know it.
				c := k.listen(t, stranger, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
				_, err := c.Dial(ctxT(t, 5*time.Second), server.Addr(), target)
				mustErr(t, err, core.ErrUnauthorized, "unknown device dial")
				noSession(t, server, 200*time.Millisecond)

				// A revoked device is refused the same way.
				allow.Revoke(a.DeviceID())
				ca := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
				_, err = ca.Dial(ctxT(t, 5*time.Second), server.Addr(), target)
				mustErr(t, err, core.ErrUnauthorized, "revoked device dial")
				noSession(t, server, 200*time.Millisecond)
			})
		}
	}
}

func TestDialerRefusesUnknownServer(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(), versionRange{}, Limits{})
			_, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), core.DeviceID{})
			mustErr(t, err, core.ErrUnauthorized, "dial of an unknown server")
			noSession(t, server, 200*time.Millisecond)
		})
	}
}

func TestWrongServerForExpectedID(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b, other := newIdentity(t), newIdentity(t), newIdentity(t)
			// The client has both b and other registered, and dials b's
			// address expecting other: IK encrypts to other's key, which the
			// server at that address cannot read.
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey(), other.PublicKey()), versionRange{}, Limits{})
			_, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), other.DeviceID())
			mustErr(t, err, core.ErrHandshake, "IK dial of the wrong device")
			noSession(t, server, 200*time.Millisecond)

			// Without a key to look up, XX runs and the proven id is checked.
			bare := k.listen(t, a, authorizerOnly{NewAllowList(b.PublicKey(), other.PublicKey())}, versionRange{}, Limits{})
			_, err = bare.Dial(ctxT(t, 5*time.Second), server.Addr(), other.DeviceID())
			mustErr(t, err, core.ErrHandshake, "XX dial of the wrong device")
			noSession(t, server, 200*time.Millisecond)
		})
	}
}

// authorizerOnly hides the KeyLookup of the list it wraps.
type authorizerOnly struct{ a core.Authorizer }

func (o authorizerOnly) Authorize(ctx context.Context, id core.DeviceID, key core.PublicKey) error {
	return o.a.Authorize(ctx, id, key)
}

// A device that claims a registered identity but proves another static key
// (it holds the wrong private key) is refused, in both patterns.
func TestStaticKeyMismatchRefused(t *testing.T) {
	for _, k := range kinds() {
		for _, ik := range []bool{false, true} {
			t.Run(k.name+"/"+map[bool]string{false: "XX", true: "IK"}[ik], func(t *testing.T) {
				a, b, mallory := newIdentity(t), newIdentity(t), newIdentity(t)
				server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
				m, binding := k.raw(t, server, server.Addr())
				h := newHandshaker(mallory, defaultVersions, allowAll)
				h.claim = a.PublicKey() // a's registered key, mallory's static key
				var expect *core.PublicKey
				if ik {
					bk := b.PublicKey()
					expect = &bk
				}
				_, err := initiateOn(t, m, h, binding, expect)
				if err == nil {
					t.Fatal("handshake with a borrowed identity succeeded")
				}
				mustErr(t, err, core.ErrHandshake, "borrowed identity")
				noSession(t, server, 200*time.Millisecond)
			})
		}
	}
}

func allowAll(context.Context, core.DeviceID, core.PublicKey) error { return nil }

// initiateOn runs an initiator handshake on a fresh stream of m.
func initiateOn(t *testing.T, m mux, h handshaker, binding []byte, expect *core.PublicKey) (peerInfo, error) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	st, err := m.open(ctx)
	if err != nil {
		return peerInfo{}, err
	}
	defer st.Close()
	return h.initiate(ctx, st, binding, expect, core.DeviceID{})
}

func TestVersionMismatch(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{2, 3}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{1, 1}, Limits{})
			_, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
			mustErr(t, err, core.ErrVersionMismatch, "dial across versions")
			noSession(t, server, 200*time.Millisecond)

			// Overlapping ranges settle on the highest common version.
			newer := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{1, 2}, Limits{})
			s, err := newer.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			if v := s.(*Session).Version(); v != 2 {
				t.Fatalf("negotiated version %d, want 2", v)
			}
		})
	}
}

// TestPerPeerSessionCap: a device at its session cap that authenticates
// once more replaces its oldest session (closed at once) instead of being
// refused as busy: a device restarted after a crash must not be locked out
// by the sessions it left behind until they idle out.
func TestPerPeerSessionCap(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{MaxSessionsPerPeer: 2})
			echo(t, server)
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{MaxSessionsPerPeer: 10})
			var live []core.Session
			for i := 0; i < 2; i++ {
				s, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				live = append(live, s)
			}
			for i, s := range live { // established: the server has registered both
				if got, err := roundTrip(t, s, "established"); err != nil || got != "established" {
					t.Fatalf("round trip on session %d = %q, %v", i, got, err)
				}
			}
			third, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
			if err != nil {
				t.Fatalf("third session at the cap: %v, want the oldest replaced", err)
			}
			select {
			case <-live[0].Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the oldest session was not closed")
			}
			if got, err := roundTrip(t, third, "x"); err != nil || got != "x" {
				t.Fatalf("round trip on the new session = %q, %v", got, err)
			}
			if got, err := roundTrip(t, live[1], "y"); err != nil || got != "y" {
				t.Fatalf("round trip on the second session = %q, %v", got, err)
			}
		})
	}
}

// The session a device's newest handshake replaces at the cap is the one
// admitted first, even when its registration lags behind a later session's:
// the responder of an IK handshake registers after its reply is on the wire,
// and CI once saw a slow goroutine make the second session the "oldest".
func TestSessionCapReplacesFirstAdmitted(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	mem := NewMemNetwork()
	server, err := mem.ListenConfig(MemConfig{Identity: b, Authorizer: NewAllowList(a.PublicKey()), Limits: Limits{MaxSessionsPerPeer: 2}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	held, hold := make(chan struct{}), make(chan struct{})
	var registering atomic.Int32
	server.ep.beforeRegister = func() {
		if registering.Add(1) == 1 { // the first session waits
			close(held)
			<-hold
		}
	}
	echo(t, server)
	client, err := mem.ListenConfig(MemConfig{Identity: a, Authorizer: NewAllowList(b.PublicKey()), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	dial := func(what string) core.Session {
		s, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
		if err != nil {
			t.Fatalf("dial %s: %v", what, err)
		}
		return s
	}
	first := dial("first")
	<-held
	second := dial("second")
	if got, err := roundTrip(t, second, "2"); err != nil || got != "2" { // registered
		t.Fatalf("round trip on the second session = %q, %v", got, err)
	}
	close(hold)
	if got, err := roundTrip(t, first, "1"); err != nil || got != "1" { // registered after the second
		t.Fatalf("round trip on the first session = %q, %v", got, err)
	}
	third := dial("third")
	select {
	case <-first.Done():
	case <-second.Done():
		t.Fatal("the cap closed the second session; want the first, admitted before it")
	case <-time.After(5 * time.Second):
		t.Fatal("no session was closed at the cap")
	}
	for msg, s := range map[string]core.Session{"2": second, "3": third} {
		if got, err := roundTrip(t, s, msg); err != nil || got != msg {
			t.Fatalf("round trip %s after the replacement = %q, %v", msg, got, err)
		}
	}
}

// A corrupted frame closes the session it arrived on, with an error naming
// the violation, while another session to the same transport carries on.
func TestCorruptFrameClosesOnlyThatSession(t *testing.T) {
	for _, k := range kinds() {
		for _, corrupt := range []string{"frame", "stream-header"} {
			t.Run(k.name+"/"+corrupt, func(t *testing.T) {
				testCorruptFrame(t, k, corrupt)
			})
		}
	}
}

func testCorruptFrame(t *testing.T, k kind, corrupt string) {
	a, c, srv := newIdentity(t), newIdentity(t), newIdentity(t)
	server := k.listen(t, srv, NewAllowList(a.PublicKey(), c.PublicKey()), versionRange{}, Limits{})
	ctx := ctxT(t, 10*time.Second)
	serverErr := make(chan error, 2)
	go serveFrames(ctx, server, serverErr)

	bad := k.listen(t, a, NewAllowList(srv.PublicKey()), versionRange{}, Limits{})
	good := k.listen(t, c, NewAllowList(srv.PublicKey()), versionRange{}, Limits{})
	sBad, err := bad.Dial(ctx, server.Addr(), srv.DeviceID())
	if err != nil {
		t.Fatal(err)
	}
	sGood, err := good.Dial(ctx, server.Addr(), srv.DeviceID())
	if err != nil {
		t.Fatal(err)
	}
	var st core.Stream
	if corrupt == "frame" {
		st, err = sBad.OpenStream(ctx)
		if err == nil { // an application frame claiming 4 GiB
			_, err = st.Write([]byte{byte(wire.TypeAppMin), 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
		}
	} else { // bypass OpenStream: a stream whose header is garbage
		st, err = sBad.(*Session).m.open(ctx)
		if err == nil {
			_, err = st.Write([]byte{0x05, 0, 0, 0, 2, 0xde, 0xad})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	want := core.ErrProtocol
	if corrupt == "frame" {
		want = core.ErrFrameTooLarge
	}
	mustErr(t, <-serverErr, want, "server side of the corrupt session")
	select {
	case <-sBad.Done():
	case <-ctx.Done():
		t.Fatal("corrupt session still open")
	}
	mustErr(t, sBad.(*Session).Err(), core.ErrProtocol, "sender's view of why its session ended")
	for i := 0; i < 3; i++ {
		s, err := frameRoundTrip(ctx, sGood.(*Session), "still here")
		if err != nil || s != "still here" {
			t.Fatalf("other session after the corruption: %q, %v", s, err)
		}
	}
}

// serveFrames echoes application frames on every stream of every session,
// reporting read errors.
func serveFrames(ctx context.Context, tr core.Transport, errs chan<- error) {
	for {
		s, err := tr.Accept(ctx)
		if err != nil {
			return
		}
		go func(s *Session) {
			for {
				st, err := s.AcceptStream(ctx)
				if err != nil {
					if s.Err() != nil && !errors.Is(s.Err(), core.ErrClosed) {
						errs <- err
					}
					return
				}
				go func() {
					defer st.Close()
					for {
						f, err := s.ReadFrame(st, nil)
						if err != nil {
							if !errors.Is(err, core.ErrClosed) && !errors.Is(err, io.EOF) {
								errs <- err
							}
							return
						}
						if err := s.WriteFrame(st, f.Type, f.Payload); err != nil {
							return
						}
					}
				}()
			}
		}(s.(*Session))
	}
}

func frameRoundTrip(ctx context.Context, s *Session, msg string) (string, error) {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := s.WriteFrame(st, wire.TypeAppMin, []byte(msg)); err != nil {
		return "", err
	}
	f, err := s.ReadFrame(st, nil)
	return string(f.Payload), err
}

// The IK responder starts its session as soon as it has sent its reply (its
// first application bytes follow it without waiting a round trip), then
// reads the initiator's verdict: a refusal, or no verdict within the
// handshake timeout, ends that session.
func TestIKResponderEndsSessionWithoutVerdict(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{HandshakeTimeout: 500 * time.Millisecond})
			bk := b.PublicKey()

			// The initiator refuses the server after its reply.
			m, binding := k.raw(t, server, server.Addr())
			refuser := newHandshaker(a, defaultVersions, func(context.Context, core.DeviceID, core.PublicKey) error {
				return fmt.Errorf("%w: not today", core.ErrUnauthorized)
			})
			_, err := initiateOn(t, m, refuser, binding, &bk)
			mustErr(t, err, core.ErrUnauthorized, "refusing initiator")
			// The session may end before Accept takes it (then Accept
			// never sees it); one handed over must end.
			if s, err := server.Accept(ctxT(t, time.Second)); err == nil {
				select {
				case <-s.Done():
				case <-time.After(3 * time.Second):
					t.Fatal("responder session still open after the initiator refused it")
				}
				mustErr(t, s.(*Session).Err(), core.ErrUnauthorized, "responder session refused by the initiator")
			}

			// The initiator reads the reply and then sends nothing.
			m, binding = k.raw(t, server, server.Addr())
			ctx := ctxT(t, 5*time.Second)
			st, err := m.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			silent := newHandshaker(a, defaultVersions, func(context.Context, core.DeviceID, core.PublicKey) error {
				<-ctx.Done() // never decides
				return ctx.Err()
			})
			go func() { _, _ = silent.initiate(ctx, st, binding, &bk, core.DeviceID{}) }()
			s, err := server.Accept(ctx)
			if err != nil {
				t.Fatalf("IK responder session: %v", err)
			}
			select {
			case <-s.Done():
			case <-time.After(3 * time.Second):
				t.Fatal("responder session still open with no verdict after the handshake timeout")
			}
			mustErr(t, s.(*Session).Err(), core.ErrHandshake, "responder session with no verdict")
		})
	}
}
