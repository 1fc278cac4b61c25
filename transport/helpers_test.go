package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// kind builds transports of one implementation for the shared tests.
type kind struct {
	name string
	// listen starts a transport; the test's cleanup closes it.
	listen func(t *testing.T, id *identity.Identity, auth core.Authorizer, v versionRange, l Limits) core.Transport
	// raw opens a connection to addr without the transport's own
	// handshake, so a test can play a misbehaving initiator. It returns the
	// connection and its channel binding.
	raw func(t *testing.T, from core.Transport, addr string) (mux, []byte)
}

func kinds() []kind {
	mem := NewMemNetwork()
	return []kind{
		{name: "quic", listen: listenQUIC, raw: rawQUIC},
		{
			name: "mem",
			listen: func(t *testing.T, id *identity.Identity, auth core.Authorizer, v versionRange, l Limits) core.Transport {
				m, err := mem.ListenConfig(MemConfig{Identity: id, Authorizer: auth, Limits: l, Logger: testLogger(), versions: v})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = m.Close() })
				return m
			},
			raw: rawMem,
		},
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("TRANSPORT_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func listenQUIC(t *testing.T, id *identity.Identity, auth core.Authorizer, v versionRange, l Limits) core.Transport {
	t.Helper()
	q, err := NewQUIC(context.Background(), QUICConfig{
		Identity: id, Authorizer: auth, ListenAddr: "127.0.0.1:0", Limits: l, Logger: testLogger(), versions: v,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func rawQUIC(t *testing.T, _ core.Transport, addr string) (mux, []byte) {
	t.Helper()
	conn := rawQUICConn(t, addr, wire.ALPN)
	b, err := exporter(conn)
	if err != nil {
		t.Fatal(err)
	}
	return &quicMux{conn: conn}, b
}

// rawQUICConn is a bare QUIC connection to addr, as any client could open.
func rawQUICConn(t *testing.T, addr, alpn string) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseWithError(0, "") })
	return conn
}

func rawMem(t *testing.T, from core.Transport, addr string) (mux, []byte) {
	t.Helper()
	m := from.(*Mem)
	target := m.net.lookup(addr)
	binding := make([]byte, 32)
	_, _ = rand.Read(binding)
	l := newMemLink(100, 100)
	p, ok := target.ep.beginPending("raw", &memEnd{l: l, side: 1})
	if !ok {
		t.Fatal("target closed")
	}
	go target.ep.serve(binding, p)
	end := &memEnd{l: l, side: 0}
	t.Cleanup(func() { end.close(nil) })
	return end, binding
}

func newIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustErr fails unless err wraps want.
func mustErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want one wrapping %v", what, err, want)
	}
}

// noSession checks that the transport hands no session to Accept.
func noSession(t *testing.T, tr core.Transport, wait time.Duration) {
	t.Helper()
	s, err := tr.Accept(ctxT(t, wait))
	if err == nil {
		t.Fatalf("Accept returned a session with %s; want none", s.Peer().Short())
	}
}

// echo serves sessions from tr: every accepted stream is echoed back.
func echo(t testing.TB, tr core.Transport) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			s, err := tr.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := s.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						defer st.Close()
						_, _ = io.Copy(st, st)
						_ = st.CloseWrite()
					}()
				}
			}()
		}
	}()
}

// roundTrip sends msg on a new stream of s and returns what comes back.
func roundTrip(t *testing.T, s core.Session, msg string) (string, error) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	st, err := s.OpenStream(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if _, err := st.Write([]byte(msg)); err != nil {
		return "", err
	}
	if err := st.CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(st)
	return string(b), err
}
