package peers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// hangingTransport never answers at "fake:dead": its dials wait for their
// context, as a dial to an address the peer left waits out the handshake
// timeout.
type hangingTransport struct{ *fakeTransport }

func (t hangingTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	if addr == "fake:dead" {
		t.fakeTransport.mu.Lock()
		t.dials = append(t.dials, dialRec{at: t.clock.Now(), addr: addr, peer: peer})
		t.fakeTransport.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return t.fakeTransport.Dial(ctx, addr, peer)
}

// TestNewAddressDialledBesideAHangingDial: while a dial to a dead address
// hangs, an address learnt from discovery is dialled at once (the clock does
// not move, so the hanging dial never times out) and its session stands.
func TestNewAddressDialledBesideAHangingDial(t *testing.T) {
	peer := device(0x20)
	clock := core.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tr := hangingTransport{newTransport(clock)}
	links := make(chan *Link, 4)
	m := New(Config{Self: device(0x10), Handler: joiner{links: links}, Roster: roster{peer}, Clock: clock})
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Start(ctx, tr); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer cancel()
	m.Learn(ctx, peer, []string{"fake:dead"})
	deadline := time.Now().Add(wait)
	for len(tr.dialLog()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dead address was never dialled")
		}
		time.Sleep(time.Millisecond)
	}
	tr.setReach("fake:new", peer)
	m.Learn(ctx, peer, []string{"fake:new"})
	select {
	case l := <-links:
		if l.Peer() != peer || !l.Outbound() {
			t.Fatalf("session with %s, outbound %v", l.Peer().Short(), l.Outbound())
		}
	case <-time.After(wait):
		t.Fatalf("the new address waited for the hanging dial; dials: %+v", tr.dialLog())
	}
	if err := m.LastDialError(peer); err != nil {
		t.Fatalf("LastDialError after a dial worked: %v", err)
	}
}

// remoteSession is a session that knows the peer's address.
type remoteSession struct {
	*fakeSession
	remote string
}

func (s remoteSession) RemoteAddr() string { return s.remote }

// TestMovedClosesSessionsOnALeftPath: a session whose remote host the peer
// no longer announces is closed; one on a host it still announces stays.
func TestMovedClosesSessionsOnALeftPath(t *testing.T) {
	peer := device(0x20)
	g := newRig(t, roster{peer})
	s := remoteSession{fakeSession: newSession(peer), remote: "10.0.0.1:4433"}
	g.tr.accept <- s
	g.nextLink()
	if n := g.m.Moved(peer, []string{"10.0.0.1:5555", "[fd00::1]:4433"}); n != 0 || s.closed() {
		t.Fatalf("closed %d sessions on a host still announced", n)
	}
	if n := g.m.Moved(peer, []string{"10.0.0.9:4433"}); n != 1 {
		t.Fatalf("Moved closed %d sessions, want 1", n)
	}
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("the session on the old path was not closed")
	}
	if !errors.Is(s.reason(), errMoved) {
		t.Fatalf("closed with %v", s.reason())
	}
}
