package federation

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// quicNode opens a node on dir (a libSQL file) listening on QUIC on
// loopback, at a new port every time.
func quicNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := New(Config{Dir: dir, Network: NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// liveSession returns n's greeted, live session with peer, if any.
func liveSession(n *Node, peer core.DeviceID) *engine.PeerSession {
	for _, mb := range n.c.Peers.Members() {
		ps := mb.(*engine.PeerSession)
		select {
		case <-ps.Sess.Done():
			continue
		default:
		}
		if ps.Peer() == peer && ps.Link.Greeted() {
			return ps
		}
	}
	return nil
}

// waitSession waits until n and peer each hold a live session with the
// other, other than the sessions in old, and returns n's.
func waitSession(t *testing.T, n, peer *Node, within time.Duration, old ...*engine.PeerSession) *engine.PeerSession {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		a, b := liveSession(n, peer.DeviceID()), liveSession(peer, n.DeviceID())
		fresh := a != nil && b != nil
		for _, o := range old {
			fresh = fresh && a != o && b != o
		}
		if fresh {
			t.Logf("session up after %s", time.Since(start).Round(time.Millisecond))
			return a
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no session between %s and %s within %s", n.DeviceID().Short(), peer.DeviceID().Short(), within)
	return nil
}

// waitSynced writes a marker on from and waits for it on to.
func waitSynced(t *testing.T, from, to *Node, key string) {
	t.Helper()
	ctx := context.Background()
	if err := from.Put(ctx, "notes", key, []byte(key)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := to.Get(ctx, "notes", key)
		if err == nil && string(v) == key {
			return
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never arrived", key)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forget empties n's address book entry for peer, so that n cannot dial it.
func (n *Node) forget(peer core.DeviceID) {
	n.c.Peers.Forget(peer)
}

// TestRedialAfterSessionKilled: a session ends (closed from the test, on
// the side that dialled or on the side that accepted it) and the SDK
// re-establishes it within 5 s, with nobody calling Connect, whichever side
// alone may dial: the acceptor learned the dialler's address from its
// hello. Before, nothing redialled, and the acceptor had no address to.
func TestRedialAfterSessionKilled(t *testing.T) {
	for _, kill := range []string{"dialer", "acceptor"} {
		for _, redialer := range []string{"both", "dialer", "acceptor"} {
			t.Run(fmt.Sprintf("kill-on-%s/redial-by-%s", kill, redialer), func(t *testing.T) {
				ctx := context.Background()
				a, b := quicNode(t, t.TempDir()), quicNode(t, t.TempDir())
				a.TrustDevice(b.PublicKey())
				b.TrustDevice(a.PublicKey())
				if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
					t.Fatal(err)
				}
				sa := waitSession(t, a, b, 5*time.Second)
				sb := liveSession(b, a.DeviceID())
				if !sa.Link.Outbound() || sb.Link.Outbound() {
					t.Fatalf("outbound flags: dialer %v, acceptor %v", sa.Link.Outbound(), sb.Link.Outbound())
				}
				switch redialer {
				case "dialer":
					b.forget(a.DeviceID())
				case "acceptor":
					a.forget(b.DeviceID())
				}
				victim := sa
				if kill == "acceptor" {
					victim = sb
				}
				_ = victim.Sess.Close(fmt.Errorf("%w: killed by the test", core.ErrClosed))
				waitSession(t, a, b, 5*time.Second, sa, sb)
				waitSynced(t, a, b, "after-"+kill)
				waitSynced(t, b, a, "back-"+kill)
				waitOneSession(t, a, b)
			})
		}
	}
}

// TestRedialAcrossRestarts: a node closed and reopened on the same Dir
// listens on a new port; it redials its peer from the address it
// persisted, the peer learns the new address from its hello, and when the
// peer restarts in turn it redials that new address.
func TestRedialAcrossRestarts(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a, b := quicNode(t, dirA), quicNode(t, dirB)
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	if err := a.Connect(context.Background(), b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, a, b, 5*time.Second)
	waitSynced(t, a, b, "first")

	oldAddr := a.Addr()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = quicNode(t, dirA)
	if a.Addr() == oldAddr {
		t.Fatalf("reopened on the same address %s", oldAddr)
	}
	waitSession(t, a, b, 5*time.Second)
	waitSynced(t, b, a, "after-a-restart")
	if got := b.c.Peers.Addrs(a.DeviceID()); len(got) == 0 || got[0] != a.Addr() {
		t.Fatalf("b knows a at %v, want %s first", got, a.Addr())
	}
	// b redials a's new address by itself: a may not dial this time.
	a.forget(b.DeviceID())
	old := liveSession(b, a.DeviceID())
	_ = old.Sess.Close(fmt.Errorf("%w: killed by the test", core.ErrClosed))
	if s := waitSession(t, b, a, 5*time.Second, old); !s.Link.Outbound() {
		t.Fatal("the new session was not dialled by b")
	}
	waitSynced(t, a, b, "after-b-redial")

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = quicNode(t, dirB)
	waitSession(t, b, a, 5*time.Second)
	waitSynced(t, a, b, "after-b-restart")
}

// sessionCount returns how many live sessions n holds with peer.
func sessionCount(n *Node, peer core.DeviceID) int {
	c := 0
	for _, mb := range n.c.Peers.Members() {
		ps := mb.(*engine.PeerSession)
		select {
		case <-ps.Sess.Done():
		default:
			if ps.Peer() == peer {
				c++
			}
		}
	}
	return c
}

// waitOneSession waits until a and b each hold exactly one live session
// with the other (a duplicate from dials crossing is closed within moments)
// and checks that it stays so.
func waitOneSession(t *testing.T, a, b *Node) {
	t.Helper()
	one := func() bool { return sessionCount(a, b.DeviceID()) == 1 && sessionCount(b, a.DeviceID()) == 1 }
	deadline := time.Now().Add(3 * time.Second)
	for !one() {
		if time.Now().After(deadline) {
			t.Fatalf("%d and %d sessions, want one each", sessionCount(a, b.DeviceID()), sessionCount(b, a.DeviceID()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if !one() {
		t.Fatalf("one session each, then %d and %d", sessionCount(a, b.DeviceID()), sessionCount(b, a.DeviceID()))
	}
}

// TestSimultaneousDialsKeepOneSession: two live devices dial each other at
// the same moment, again and again. Both must settle on the same one
// session (the one dialled by the lower device id), never closing each
// other's choice in a loop.
func TestSimultaneousDialsKeepOneSession(t *testing.T) {
	ctx := context.Background()
	a, b := quicNode(t, t.TempDir()), quicNode(t, t.TempDir())
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	for round := range 5 {
		errc := make(chan error, 2)
		go func() { errc <- a.Connect(ctx, b.Addr(), b.DeviceID()) }()
		go func() { errc <- b.Connect(ctx, a.Addr(), a.DeviceID()) }()
		for range 2 {
			if err := <-errc; err != nil {
				t.Logf("round %d: %v", round, err) // a dial may lose to the other
			}
		}
		waitSession(t, a, b, 5*time.Second)
		waitOneSession(t, a, b)
		sa, sb := liveSession(a, b.DeviceID()), liveSession(b, a.DeviceID())
		if sa == nil || sb == nil {
			t.Fatalf("round %d: the session went away", round)
		}
		lowDialled := sa.Link.Outbound() == (a.DeviceID().Compare(b.DeviceID()) < 0)
		if !lowDialled || sa.Link.Outbound() == sb.Link.Outbound() {
			t.Fatalf("round %d: kept sessions differ or are not the lower id's (a outbound %v, b outbound %v)", round, sa.Link.Outbound(), sb.Link.Outbound())
		}
		waitSynced(t, a, b, fmt.Sprintf("round-%d", round))
	}
}

// countingTransport counts dials.
type countingTransport struct {
	Transport
	dials atomic.Int64
}

func (c *countingTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (Session, error) {
	c.dials.Add(1)
	return c.Transport.Dial(ctx, addr, peer)
}

// TestRedialBacksOff: a trusted peer that cannot be reached is redialled
// with exponential backoff, not in a loop.
func TestRedialBacksOff(t *testing.T) {
	net := transport.NewMemNetwork()
	var ct *countingTransport
	n, err := New(Config{Store: memstore.New(), Network: NetworkConfig{Transport: func(ctx context.Context, p TransportParams) (Transport, error) {
		tr, err := net.ListenConfig(transport.MemConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys})
		ct = &countingTransport{Transport: tr}
		return ct, err
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	peer, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	n.TrustDevice(peer.PublicKey())
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.c.Peers.Learn(context.Background(), peer.DeviceID(), []string{"mem:nowhere"})
	time.Sleep(4 * time.Second)
	// Delays of 50-100, 100-200, ... ms: about 5 to 7 dials in 4 s.
	t.Logf("%d dials in 4 s", ct.dials.Load())
	if d := ct.dials.Load(); d < 3 || d > 10 {
		t.Fatalf("%d dials in 4 s, want about 6 (exponential backoff from 100ms)", d)
	}
}
