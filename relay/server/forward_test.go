package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/server"
	"github.com/devicemesh/federation/transport"
)

type allowAll struct{}

func (allowAll) Authorize(context.Context, core.DeviceID, core.PublicKey) error { return nil }

func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// device is a QUIC transport with no way to reach others but the relay.
type device struct {
	id  *identity.Identity
	tr  *transport.QUIC
	fwd *relay.Forwarder
}

func newDevice(t *testing.T, relayAddr string, secret registry.Secret) *device {
	t.Helper()
	id, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewQUIC(context.Background(), transport.QUICConfig{Identity: id, Authorizer: allowAll{}, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := relay.NewForwarder(relay.ForwarderConfig{
		Relay:  relay.ClientConfig{Addr: relayAddr},
		Self:   id.DeviceID(),
		Secret: func() (registry.Secret, error) { return secret, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close(); _ = fwd.Close() })
	if err := tr.AddPath(fwd); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fwd.WaitAttached(ctx); err != nil {
		t.Fatal(err)
	}
	return &device{id: id, tr: tr, fwd: fwd}
}

// TestForwardSession runs an end-to-end session between two devices
// through the relay, one attached over UDP and one over TLS on TCP, and
// checks the bytes arrive intact and the session names the right peer.
func TestForwardSession(t *testing.T) {
	s := startServer(t, server.Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0"})
	var secret registry.Secret
	secret.Generation = 1
	_, _ = rand.Read(secret.Key[:])
	a := newDevice(t, "quic://"+s.UDPAddr(), secret)
	b := newDevice(t, "tls://"+s.TCPAddr(), secret)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr := a.fwd.Addrs(b.id.DeviceID())[0]
	got := make(chan []byte, 1)
	go func() {
		sess, err := b.tr.Accept(ctx)
		if err != nil {
			got <- nil
			return
		}
		st, err := sess.AcceptStream(ctx)
		if err != nil {
			got <- nil
			return
		}
		data, _ := io.ReadAll(st)
		got <- data
	}()
	sess, err := a.tr.Dial(ctx, addr, b.id.DeviceID())
	if err != nil {
		t.Fatalf("dial through relay: %v", err)
	}
	if sess.Peer() != b.id.DeviceID() {
		t.Fatalf("peer %v", sess.Peer())
	}
	st, err := sess.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)
	if _, err := st.Write(payload); err != nil {
		t.Fatal(err)
	}
	_ = st.CloseWrite()
	if data := <-got; !bytes.Equal(data, payload) {
		t.Fatalf("received %d bytes, want the %d sent", len(data), len(payload))
	}
}

// TestAuthRefused: a relay that admits one credential refuses another.
func TestAuthRefused(t *testing.T) {
	var ok, other [32]byte
	_, _ = rand.Read(ok[:])
	_, _ = rand.Read(other[:])
	admitted := relay.NewCredential(ok, 1).ID()
	s := startServer(t, server.Config{UDPAddr: "127.0.0.1:0", Allow: func(id relay.CredentialID) bool { return id == admitted }})
	ctx := context.Background()
	c, err := relay.Dial(ctx, relay.ClientConfig{Addr: s.UDPAddr(), Credential: relay.NewCredential(ok, 1)})
	if err != nil {
		t.Fatalf("admitted credential: %v", err)
	}
	_ = c.Close()
	_, err = relay.Dial(ctx, relay.ClientConfig{Addr: s.UDPAddr(), Credential: relay.NewCredential(other, 1)})
	if !errors.Is(err, relay.ErrUnauthorized) {
		t.Fatalf("other credential: %v, want ErrUnauthorized", err)
	}
}
