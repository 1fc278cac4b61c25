package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// recorder keeps a copy of everything written through it.
type recorder struct {
	core.Stream
	sent bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.sent.Write(p)
	return r.Stream.Write(p)
}

// Recorded initiator messages of a successful handshake, replayed on a new
// connection, are refused: the new connection's channel binding differs.
func TestReplayedHandshakeRefused(t *testing.T) {
	for _, k := range kinds() {
		for _, ik := range []bool{false, true} {
			t.Run(k.name+"/"+map[bool]string{false: "XX", true: "IK"}[ik], func(t *testing.T) {
				a, b := newIdentity(t), newIdentity(t)
				server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
				var expect *core.PublicKey
				if ik {
					bk := b.PublicKey()
					expect = &bk
				}
				ctx := ctxT(t, 10*time.Second)

				// The genuine handshake, recorded.
				m1, binding1 := k.raw(t, server, server.Addr())
				st, err := m1.open(ctx)
				if err != nil {
					t.Fatal(err)
				}
				rec := &recorder{Stream: st}
				h := newHandshaker(a, defaultVersions, allowAll)
				if _, err := h.initiate(ctx, rec, binding1, expect, core.DeviceID{}); err != nil {
					t.Fatalf("genuine handshake: %v", err)
				}
				if _, err := server.Accept(ctx); err != nil {
					t.Fatalf("genuine session not accepted: %v", err)
				}

				// The replay, on a fresh connection.
				m2, _ := k.raw(t, server, server.Addr())
				st2, err := m2.open(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st2.Write(rec.sent.Bytes()); err != nil {
					t.Fatal(err)
				}
				got, _ := readFrames(st2)
				if bytes.Contains(got, []byte{byte(wire.TypeAccept), 0, 0, 0, 0}) {
					t.Fatal("replayed handshake was accepted")
				}
				select {
				case <-m2.done():
				case <-ctx.Done():
					t.Fatal("connection carrying the replay still open")
				}
				mustErr(t, m2.cause(), core.ErrHandshake, "replay connection close")
				noSession(t, server, 200*time.Millisecond)
			})
		}
	}
}

// readFrames reads whole frames from r until it fails, returning their bytes.
func readFrames(r io.Reader) ([]byte, error) {
	var out bytes.Buffer
	for {
		f, err := wire.ReadFrame(r, nil, wire.MaxHandshakeFrame)
		if err != nil {
			return out.Bytes(), err
		}
		out.Write([]byte{byte(f.Type), 0, 0, 0, byte(len(f.Payload))})
		out.Write(f.Payload)
	}
}

// A device the server does not know gets zero application bytes, though the
// server writes application data to every session Accept hands it. A known
// device doing exactly the same gets the data (the control).
func TestUnknownDeviceReceivesNothing(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b, stranger := newIdentity(t), newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			ctx := ctxT(t, 10*time.Second)
			secret := []byte("application data: the user's diary")
			go func() { // the application: push data to every session it gets
				for {
					s, err := server.Accept(ctx)
					if err != nil {
						return
					}
					if st, err := s.OpenStream(ctx); err == nil {
						_, _ = st.Write(secret)
						_ = st.CloseWrite()
					}
				}
			}()
			got, err := fetchAsInitiator(t, k, server, stranger)
			mustErr(t, err, core.ErrUnauthorized, "stranger's handshake")
			if len(got) != 0 {
				t.Fatalf("unknown device received %d application bytes", len(got))
			}
			got, err = fetchAsInitiator(t, k, server, a)
			if err != nil || !bytes.Contains(got, secret) {
				t.Fatalf("known device (control) received %q, %v", got, err)
			}
		})
	}
}

// fetchAsInitiator connects as who, runs the initiator handshake ignoring
// its own verdict, then reads whatever the server sends on a stream it opens.
func fetchAsInitiator(t *testing.T, k kind, server core.Transport, who *identity.Identity) ([]byte, error) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	m, binding := k.raw(t, server, server.Addr())
	h := newHandshaker(who, defaultVersions, allowAll)
	_, hsErr := initiateOn(t, m, h, binding, nil)
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := m.accept(actx)
	if err != nil {
		return nil, errors.Join(hsErr, err)
	}
	b, err := io.ReadAll(st)
	if err != nil {
		return b, errors.Join(hsErr, err)
	}
	return b, hsErr
}

// A relay that terminates QUIC on both sides and passes the handshake
// stream through cannot splice the two halves: the exporter values differ.
func TestSplicingRelayRefused(t *testing.T) {
	for _, ik := range []bool{false, true} {
		t.Run(map[bool]string{false: "XX", true: "IK"}[ik], func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			server := listenQUIC(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			// The relay cannot forward a verdict it never gets, so the
			// client may only learn by its handshake timeout.
			client := listenQUIC(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{HandshakeTimeout: time.Second})
			relay := startSplicer(t, server.Addr())
			target := core.DeviceID{}
			if ik {
				target = b.DeviceID()
			}
			_, err := client.Dial(ctxT(t, 5*time.Second), relay, target)
			mustErr(t, err, core.ErrHandshake, "dial through a splicing relay")
			noSession(t, server, 200*time.Millisecond)
		})
	}
}

// startSplicer runs a man in the middle that accepts QUIC connections,
// opens its own to upstream and copies the first stream both ways.
func startSplicer(t *testing.T, upstream string) string {
	t.Helper()
	tlsConf, err := serverTLS(wire.ALPN)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		down, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer down.CloseWithError(0, "")
		up := rawQUICConn(t, upstream, wire.ALPN)
		ds, err := down.AcceptStream(ctx)
		if err != nil {
			return
		}
		us, err := up.OpenStreamSync(ctx)
		if err != nil {
			return
		}
		go func() { _, _ = io.Copy(us, ds) }()
		_, _ = io.Copy(ds, us)
		<-ctx.Done()
	}()
	return ln.Addr().String()
}

func TestALPNMismatchIsVersionMismatch(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	server := listenQUIC(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
	q, err := NewQUIC(context.Background(), QUICConfig{
		Identity: a, Authorizer: NewAllowList(b.PublicKey()), ListenAddr: "127.0.0.1:0", alpn: "devicemesh-fed/2",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, err = q.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
	mustErr(t, err, core.ErrVersionMismatch, "dial with another ALPN")
}
