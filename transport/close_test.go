package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// Close ends every session, unblocks every stream and stops every goroutine
// the transports started; later calls fail with core.ErrClosed.
func TestCloseReleasesEverything(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx := ctxT(t, 5*time.Second)
			p := connectPair(ctx, t, k)
			server, client, cs, ss := p.server, p.client, p.cs, p.ss
			st, err := cs.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			readErr := make(chan error, 1)
			go func() { // blocked until Close: the peer never writes
				_, err := st.Read(make([]byte, 1))
				readErr <- err
			}()
			_ = server.Close()
			_ = client.Close()
			_ = server.Close() // idempotent
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("read on a closed session succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read still blocked after Close")
			}
			for _, s := range []core.Session{cs, ss} {
				select {
				case <-s.Done():
				default:
					t.Fatal("session still live after Close")
				}
			}
			if _, err := server.Accept(ctx); err == nil {
				t.Fatal("Accept after Close succeeded")
			}
			_, err = client.Dial(ctx, server.Addr(), p.serverID)
			mustErr(t, err, core.ErrClosed, "Dial after Close")
			waitGoroutines(t, before)
		})
	}
}

// pair is two transports of one kind that trust each other, with a session
// between them.
type pair struct {
	server, client core.Transport
	serverID       core.DeviceID
	cs, ss         core.Session // the client's and the server's ends
}

// connectPair listens on two transports of kind k and connects them.
func connectPair(ctx context.Context, t *testing.T, k kind) pair {
	t.Helper()
	a, b := newIdentity(t), newIdentity(t)
	p := pair{
		server:   k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{}),
		client:   k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{}),
		serverID: b.DeviceID(),
	}
	var err error
	if p.cs, err = p.client.Dial(ctx, p.server.Addr(), p.serverID); err != nil {
		t.Fatal(err)
	}
	if p.ss, err = p.server.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitGoroutines waits for the goroutine count to fall back to n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A session closed after its handshake for an application reason reaches
// the peer as such (core.ErrClosed, "session failed"), not as a failed
// handshake; a reason with a code of its own keeps it.
func TestCloseReasonReachesPeer(t *testing.T) {
	cases := []struct {
		name   string
		reason error
		want   error
		text   string
	}{
		{"application error", errors.New("apply failed"), core.ErrClosed, "session failed"},
		{"revoked", fmt.Errorf("revoked: %w", core.ErrUnauthorized), core.ErrUnauthorized, "unauthorized"},
		{"protocol", fmt.Errorf("bad frame: %w", core.ErrProtocol), core.ErrProtocol, "protocol violation"},
		{"handshake", fmt.Errorf("%w: timed out", core.ErrHandshake), core.ErrHandshake, "handshake failed"},
	}
	for _, k := range kinds() {
		for _, tc := range cases {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				ctx := ctxT(t, 5*time.Second)
				p := connectPair(ctx, t, k)
				cs := p.cs
				_ = p.ss.Close(tc.reason)
				select {
				case <-cs.Done():
				case <-ctx.Done():
					t.Fatal("peer's session still open")
				}
				err := cs.(*Session).Err()
				mustErr(t, err, tc.want, "peer's view of the close")
				if !strings.Contains(err.Error(), tc.text) {
					t.Fatalf("peer's error %q does not say %q", err, tc.text)
				}
				if tc.want != core.ErrHandshake && errors.Is(err, core.ErrHandshake) {
					t.Fatalf("peer's error %q claims a failed handshake", err)
				}
			})
		}
	}
}
