package transport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// A peer that connects and then says nothing is cut off after the handshake
// timeout.
func TestHandshakeTimeout(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			b := newIdentity(t)
			server := k.listen(t, b, NewAllowList(), versionRange{}, Limits{HandshakeTimeout: 300 * time.Millisecond})
			m, _ := k.raw(t, server, server.Addr())
			st, err := m.open(ctxT(t, time.Second))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = st.Write(wire.Hello{Min: 1, Max: 1, Pattern: wire.PatternXX}.Encode()[:3]) // and stall
			start := time.Now()
			select {
			case <-m.done():
			case <-time.After(3 * time.Second):
				t.Fatal("stalled handshake still open after 3s")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("cut off after %v, timeout 300ms", d)
			}
			mustErr(t, m.cause(), core.ErrHandshake, "stalled handshake")
		})
	}
}

// A peer cannot hold more streams open towards us than MaxIncomingStreams.
func TestMaxIncomingStreams(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			a, b := newIdentity(t), newIdentity(t)
			const limit = 3
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{MaxIncomingStreams: limit})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			s, err := client.Dial(ctxT(t, 5*time.Second), server.Addr(), b.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := server.Accept(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			opened := 0
			for i := 0; i < limit+2; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := s.OpenStream(ctx)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("stream %d: %v", i, err)
					}
					break
				}
				opened++
			}
			if opened != limit {
				t.Fatalf("opened %d streams the server never accepted, limit %d", opened, limit)
			}
		})
	}
}

// Unauthenticated connections from one address are capped: one over the
// cap takes the place of the address's oldest, which is closed as busy.
func TestPendingPerHostCap(t *testing.T) {
	b := newIdentity(t)
	server := listenQUIC(t, b, NewAllowList(), versionRange{}, Limits{MaxPendingPerHost: 2, HandshakeTimeout: 5 * time.Second})
	var conns []mux
	for i := 0; i < 3; i++ {
		m, _ := rawQUIC(t, server, server.Addr())
		conns = append(conns, m)
	}
	// Exactly one of the three (whichever the server saw first) is closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var closed []error
		for _, m := range conns {
			if c := m.cause(); c != nil {
				closed = append(closed, c)
			}
		}
		if len(closed) > 1 {
			t.Fatalf("%d pending connections closed, want 1: %v", len(closed), closed)
		}
		if len(closed) == 1 {
			mustErr(t, closed[0], ErrBusy, "connection over the per-host cap")
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection refused: three pending from one host, cap 2")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
