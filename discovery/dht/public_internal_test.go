package dht

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/devicemesh/federation/discovery/dht/dhttest"
)

// TestPickPublic checks the choice of the public address among what DHT
// nodes reported: the majority, from at least two responders, and only a
// public unicast address.
func TestPickPublic(t *testing.T) {
	pub, other := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.9")
	for _, c := range []struct {
		name string
		seen map[string]netip.Addr
		want netip.Addr
		ok   bool
	}{
		{"none", nil, netip.Addr{}, false},
		{"one responder is not enough", map[string]netip.Addr{"a": pub}, netip.Addr{}, false},
		{"majority", map[string]netip.Addr{"a": pub, "b": pub, "c": other}, pub, true},
		{"private", map[string]netip.Addr{"a": netip.MustParseAddr("192.168.1.5"), "b": netip.MustParseAddr("192.168.1.5")}, netip.Addr{}, false},
		{"loopback", map[string]netip.Addr{"a": netip.MustParseAddr("127.0.0.1"), "b": netip.MustParseAddr("127.0.0.1")}, netip.Addr{}, false},
		{"ipv6", map[string]netip.Addr{"a": netip.MustParseAddr("2001:db8::1"), "b": netip.MustParseAddr("2001:db8::1")}, netip.MustParseAddr("2001:db8::1"), true},
	} {
		got, ok := pickPublic(c.seen)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: pickPublic = %v, %v; want %v, %v", c.name, got, ok, c.want, c.ok)
		}
	}
	lan := []string{"192.168.1.5:4242", "[fd00::5]:4242"}
	if got := withPublic(lan, pub); !slices.Equal(got, append(slices.Clone(lan), "203.0.113.7:4242")) {
		t.Errorf("withPublic = %v", got)
	}
	if got := withPublic([]string{"203.0.113.7:4242"}, pub); len(got) != 1 {
		t.Errorf("withPublic added a duplicate: %v", got)
	}
	if got := withPublic([]string{"[2001:db8::1]:5"}, netip.MustParseAddr("2001:db8::2")); !slices.Contains(got, "[2001:db8::2]:5") {
		t.Errorf("withPublic of an IPv6 address = %v", got)
	}
}

// TestNodeLearnsHowItIsSeen checks that the node records the address the
// DHT nodes saw it at (BEP 42 "ip" of their replies): 127.0.0.1 here, from
// several responders, which is not public and so never announced.
func TestNodeLearnsHowItIsSeen(t *testing.T) {
	nw := dhttest.Start(t, 6)
	n, err := startNode("127.0.0.1:0", nw.Bootstrap(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	if _, err := n.get(ctx, key.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("found an item nobody put")
	}
	n.mu.Lock()
	seen := len(n.seenAs)
	var addrs []netip.Addr
	for _, a := range n.seenAs {
		addrs = append(addrs, a)
	}
	n.mu.Unlock()
	if seen < 2 {
		t.Fatalf("%d responders reported how they saw the node, want several", seen)
	}
	for _, a := range addrs {
		if a != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("a responder saw the node as %v, want 127.0.0.1", a)
		}
	}
	if ip, ok := n.publicIP(); ok {
		t.Fatalf("loopback taken for a public address: %v", ip)
	}
}
