package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// awaitEvent returns the next event of kind from sub about origin.
func awaitEvent(t *testing.T, sub *federation.Subscription, kind federation.EventKind, origin federation.DeviceID) federation.Event {
	t.Helper()
	tm := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Kind == kind && e.Origin == origin {
				return e
			}
		case <-tm:
			t.Fatalf("no %s event about %s", kind, origin.Short())
		}
	}
}

func reachOf(t *testing.T, n *federation.Node, id federation.DeviceID) federation.DeviceReach {
	t.Helper()
	st, err := n.Stats(context.Background())
	require.NoError(t, err)
	for _, d := range st.Discovery.Devices {
		if d.Device == id {
			return d
		}
	}
	t.Fatalf("%s not in Stats.Discovery", id.Short())
	return federation.DeviceReach{}
}

// TestDiscoveredAddressesAreDialled: a node that only a discovery
// mechanism tells where its peer is connects to it, raises peer events and
// says in Stats where, by what and why not when it is not connected.
func TestDiscoveredAddressesAreDialled(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	found := make(chan discovery.Static, 1)
	// The mechanism reports what the test sends it once b is up.
	mech := federation.DiscoveryMechanism{Name: "static", New: func(discovery.Mesh) (federation.Discoverer, error) {
		return waitStatic(found), nil
	}}
	b := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	a := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.Transport = memFactory(net)
		c.Discovery.Mechanisms = []federation.DiscoveryMechanism{mech}
	})
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	sub := a.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()

	require.Equal(t, "this node is not started", reachOf(t, a, b.DeviceID()).NotConnected)
	require.NoError(t, a.Start(ctx))
	require.Equal(t, "not seen on any network yet", reachOf(t, a, b.DeviceID()).NotConnected)
	require.NoError(t, b.Start(ctx))
	found <- discovery.Static{b.DeviceID(): {b.Addr()}}

	awaitEvent(t, sub, federation.EventPeerConnected, b.DeviceID())
	r := reachOf(t, a, b.DeviceID())
	require.True(t, r.Connected)
	require.Empty(t, r.NotConnected)
	require.Equal(t, "static", r.Mechanism)
	require.Equal(t, []string{b.Addr()}, r.Addrs)
	require.Contains(t, r.Known, b.Addr(), "kept in the address book")
	require.False(t, r.LastSeen.IsZero())

	require.NoError(t, b.Put(ctx, "notes", "k", []byte("v")))
	waitValue(t, a, "notes", "k", "v")

	require.NoError(t, b.Close())
	e := awaitEvent(t, sub, federation.EventPeerDisconnected, b.DeviceID())
	require.NotEmpty(t, e.Reason)
	require.Eventually(t, func() bool {
		r := reachOf(t, a, b.DeviceID())
		return !r.Connected && r.NotConnected != "" && r.NotConnected != "not seen on any network yet"
	}, 10*time.Second, 20*time.Millisecond)
	t.Logf("after b closed: %q", reachOf(t, a, b.DeviceID()).NotConnected)
}

// waitStatic is a mechanism that reports what arrives on c.
type waitStatic chan discovery.Static

func (w waitStatic) Run(ctx context.Context, self federation.PeerInfo, found func(federation.PeerInfo)) error {
	select {
	case s := <-w:
		return s.Run(ctx, self, found)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestLANAddressesComeFirst: addresses found on the local network stay
// ahead of those another mechanism reports later.
func TestLANAddressesComeFirst(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	peer := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	lan, wan := make(chan discovery.Static, 1), make(chan discovery.Static, 1)
	a := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.Transport = memFactory(net)
		c.Discovery.Mechanisms = []federation.DiscoveryMechanism{
			{Name: "mdns", New: func(discovery.Mesh) (federation.Discoverer, error) { return waitStatic(lan), nil }},
			{Name: "dht", New: func(discovery.Mesh) (federation.Discoverer, error) { return waitStatic(wan), nil }},
		}
	})
	a.TrustDevice(peer.PublicKey())
	require.NoError(t, a.Start(ctx))
	id := peer.DeviceID()
	lan <- discovery.Static{id: {"lan-address"}}
	require.Eventually(t, func() bool { return len(reachOf(t, a, id).Known) > 0 }, 10*time.Second, 10*time.Millisecond)
	wan <- discovery.Static{id: {"wan-address"}}
	require.Eventually(t, func() bool { return reachOf(t, a, id).Mechanism == "dht" }, 10*time.Second, 10*time.Millisecond)
	r := reachOf(t, a, id)
	require.Equal(t, []string{"lan-address", "wan-address"}, r.Known[:2], "the LAN path first")
	require.Equal(t, []string{"wan-address"}, r.Addrs)
}

// TestDiscoveredAddressesPersist: addresses a mechanism reported are kept
// in the address book across a restart: the restarted node, with no
// discovery at all, redials the peer at once.
func TestDiscoveredAddressesPersist(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	b := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	require.NoError(t, b.Start(ctx))
	dir := t.TempDir()
	open := func(mechs ...federation.DiscoveryMechanism) (*federation.Node, *federation.Subscription) {
		a, err := federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{Transport: memFactory(net)},
			Discovery: federation.DiscoveryConfig{Mechanisms: mechs}})
		require.NoError(t, err)
		a.TrustDevice(b.PublicKey()) // before Start: a sighting of an untrusted device is ignored
		b.TrustDevice(a.PublicKey())
		sub := a.Subscribe(federation.SubscribeOptions{})
		require.NoError(t, a.Start(ctx))
		return a, sub
	}
	found := make(chan discovery.Static, 1)
	found <- discovery.Static{b.DeviceID(): {b.Addr()}}
	a, sub := open(federation.DiscoveryMechanism{Name: "static", New: func(discovery.Mesh) (federation.Discoverer, error) { return waitStatic(found), nil }})
	awaitEvent(t, sub, federation.EventPeerConnected, b.DeviceID())
	require.NoError(t, a.Close())

	a, sub = open() // no mechanism
	defer a.Close()
	awaitEvent(t, sub, federation.EventPeerConnected, b.DeviceID())
	r := reachOf(t, a, b.DeviceID())
	require.Equal(t, "", r.Mechanism, "not sighted in this run")
	require.Contains(t, r.Known, b.Addr())
}
