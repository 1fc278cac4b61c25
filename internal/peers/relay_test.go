package peers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// TestDirectFirst: direct addresses are dialled before relay ones, within
// DirectDeadline when a relay address is there to fall back on.
func TestDirectFirst(t *testing.T) {
	addrs, deadline := directFirst([]string{"relay:aa", "10.0.0.1:4000", "relay:bb", "10.0.0.2:4000"})
	if fmt.Sprint(addrs) != "[10.0.0.1:4000 10.0.0.2:4000 relay:aa relay:bb]" {
		t.Fatalf("order %v", addrs)
	}
	if deadline("10.0.0.1:4000") != DirectDeadline || deadline("relay:aa") != DialDeadline {
		t.Fatalf("deadlines %v %v", deadline("10.0.0.1:4000"), deadline("relay:aa"))
	}
	addrs, deadline = directFirst([]string{"10.0.0.1:4000"})
	if fmt.Sprint(addrs) != "[10.0.0.1:4000]" || deadline("10.0.0.1:4000") != DialDeadline {
		t.Fatal("without a relay address, a direct dial keeps the full deadline")
	}
}

// TestDirectReplacesRelayed: of two sessions with the same peer instance,
// the direct one stays and the relayed one closes, whichever came first
// and whoever dialled; the address book never keeps relay addresses.
func TestDirectReplacesRelayed(t *testing.T) {
	peer := device(0x20)
	g := newRig(t, roster{})
	ctx := context.Background()
	inbound := func(addr string) *fakeSession {
		t.Helper()
		s := newSession(peer)
		g.tr.accept <- addrSession{Session: s, addr: addr}
		g.nextLink().Greet(ctx, 1, []string{"relay:cc", "10.0.0.9:4000"})
		return s
	}
	relayed := inbound("relay:aa")
	direct := inbound("10.0.0.9:4000")
	if !relayed.closed() || direct.closed() {
		t.Fatalf("relayed first: relayed closed %v, direct closed %v", relayed.closed(), direct.closed())
	}
	late := inbound("relay:bb")
	if !late.closed() || direct.closed() {
		t.Fatalf("relayed second: relayed closed %v, direct closed %v", late.closed(), direct.closed())
	}
	if got := g.m.Addrs(peer); fmt.Sprint(got) != "[10.0.0.9:4000]" {
		t.Fatalf("address book %v: relay addresses kept", got)
	}
	deadline := time.Now().Add(wait)
	for len(g.m.Connected(core.DeviceID{})) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("more than one session with the peer")
		}
		time.Sleep(time.Millisecond)
	}
}
