package federation_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/discovery/dht/dhttest"
)

// dhtDevice is one device of TestDHTDiscoveryEndToEnd: a real node (libSQL
// file, QUIC on loopback) restarted on a new port at will.
type dhtDevice struct {
	t    *testing.T
	name string
	dir  string
	boot []string
	n    *federation.Node
	// addrs are every address the device ever listened on.
	addrs []string
}

func (d *dhtDevice) start() {
	d.t.Helper()
	n, err := federation.New(federation.Config{
		Dir:     d.dir,
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
		Discovery: federation.DiscoveryConfig{
			LAN: federation.LANOff,
			DHT: federation.DHTConfig{Bootstrap: d.boot, Listen: "127.0.0.1:0", Lookup: 300 * time.Millisecond},
		},
	})
	if err != nil {
		d.t.Fatalf("%s: open: %v", d.name, err)
	}
	if err := n.Start(context.Background()); err != nil {
		d.t.Fatalf("%s: start: %v", d.name, err)
	}
	d.n = n
	d.addrs = append(d.addrs, n.Addr())
}

func (d *dhtDevice) stop() {
	d.t.Helper()
	if d.n == nil {
		return
	}
	if err := d.n.Close(); err != nil {
		d.t.Errorf("%s: close: %v", d.name, err)
	}
	d.n = nil
}

// reach returns what d's node knows of peer.
func (d *dhtDevice) reach(peer federation.DeviceID) federation.DeviceReach {
	d.t.Helper()
	st, err := d.n.Stats(context.Background())
	if err != nil {
		d.t.Fatalf("%s: stats: %v", d.name, err)
	}
	for _, r := range st.Discovery.Devices {
		if r.Device == peer {
			return r
		}
	}
	return federation.DeviceReach{}
}

func (d *dhtDevice) generation() uint64 {
	s, err := d.n.MeshSecret()
	if err != nil {
		return 0
	}
	return s.Generation
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDHTDiscoveryEndToEnd runs three real devices (libSQL files, QUIC on
// loopback) whose only discovery is a DHT of six nodes on loopback (LAN
// discovery off):
//
//   - alice pairs bob and rex, then all three restart on new ports, so
//     every address they exchanged is stale: alice and bob find each other
//     through the DHT alone (their Stats say so), connect and sync;
//   - alice revokes rex (the mesh secret rotates), then moves again: bob
//     follows her, rex never learns where she went;
//   - an outsider reading every item every DHT node stores finds none of
//     the devices' addresses, ports, ids or keys.
func TestDHTDiscoveryEndToEnd(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ctx := context.Background()
	mk := func(name string) *dhtDevice {
		d := &dhtDevice{t: t, name: name, dir: t.TempDir(), boot: nw.Bootstrap()}
		d.start()
		t.Cleanup(d.stop)
		return d
	}
	alice, bob, rex := mk("alice"), mk("bob"), mk("rex")
	for _, d := range []*dhtDevice{bob, rex} {
		inv, err := alice.n.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return true, nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.n.Join(ctx, inv.QR, federation.JoinOptions{}); err != nil {
			t.Fatalf("%s joins: %v", d.name, err)
		}
	}
	idA, idB, idR := alice.n.DeviceID(), bob.n.DeviceID(), rex.n.DeviceID()
	eventually(t, "all three to hold the mesh secret", 30*time.Second, func() bool {
		g := alice.generation()
		return g > 0 && bob.generation() == g && rex.generation() == g
	})
	if err := alice.n.Put(ctx, "notes", "k0", []byte("v0")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*dhtDevice{bob, rex} {
		eventually(t, d.name+" to sync before the restart", 30*time.Second, func() bool {
			v, err := d.n.Get(ctx, "notes", "k0")
			return err == nil && string(v) == "v0"
		})
	}

	// Everyone restarts on a new port: the address books are stale.
	for _, d := range []*dhtDevice{alice, bob, rex} {
		d.stop()
	}
	for _, d := range []*dhtDevice{alice, bob, rex} {
		d.start()
	}
	if err := alice.n.Put(ctx, "notes", "k1", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob to find alice through the DHT and sync", 40*time.Second, func() bool {
		v, err := bob.n.Get(ctx, "notes", "k1")
		return err == nil && string(v) == "v1"
	})
	// Whichever found the other first dialled; both see each other by dht.
	eventually(t, "alice and bob to sight each other's current address by dht", 20*time.Second, func() bool {
		ra, rb := bob.reach(idA), alice.reach(idB)
		return ra.Mechanism == "dht" && slices.Contains(ra.Addrs, alice.n.Addr()) &&
			rb.Mechanism == "dht" && slices.Contains(rb.Addrs, bob.n.Addr())
	})
	eventually(t, "rex to find alice before his revocation", 40*time.Second, func() bool {
		return slices.Contains(rex.reach(idA).Addrs, alice.n.Addr())
	})

	// Alice revokes rex: the secret rotates; bob gets the new generation.
	before := alice.generation()
	if err := alice.n.RevokeDevice(ctx, idR); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice and bob to rotate the secret", 30*time.Second, func() bool {
		g := alice.generation()
		return g > before && bob.generation() == g
	})
	if g := rex.generation(); g != before {
		t.Fatalf("rex holds secret generation %d after his revocation, want the old %d", g, before)
	}
	alice.stop()
	alice.start()
	moved := alice.n.Addr()
	if err := alice.n.Put(ctx, "notes", "k2", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob to follow alice to her new address", 40*time.Second, func() bool {
		v, err := bob.n.Get(ctx, "notes", "k2")
		return err == nil && string(v) == "v2" && slices.Contains(bob.reach(idA).Addrs, moved)
	})
	time.Sleep(2 * time.Second) // several more lookups by rex
	r := rex.reach(idA)
	if slices.Contains(r.Addrs, moved) || slices.Contains(r.Known, moved) {
		t.Fatalf("revoked rex learnt alice's new address %s: %+v", moved, r)
	}
	if _, err := rex.n.Get(ctx, "notes", "k2"); err == nil {
		t.Fatal("revoked rex received a write made after his revocation")
	}
	eventually(t, "rex to hold no session with anyone", 20*time.Second, func() bool {
		return !rex.reach(idA).Connected && !rex.reach(idB).Connected
	})

	// The outsider's view: every byte every DHT node stores.
	items := nw.StoredBytes()
	if len(items) == 0 {
		t.Fatal("the DHT stores nothing: nothing was published")
	}
	var needles [][]byte
	for _, d := range []*dhtDevice{alice, bob, rex} {
		id, pk := d.n.DeviceID(), d.n.PublicKey()
		needles = append(needles, id[:], pk[:], []byte(id.String()), []byte(id.Short()),
			[]byte(hex.EncodeToString(id[:])), []byte(hex.EncodeToString(pk[:])))
		for _, a := range d.addrs {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := strconv.Atoi(port)
			bin := binary.BigEndian.AppendUint16(net.ParseIP(host).To4(), uint16(p))
			needles = append(needles, []byte(a), []byte(port), bin)
		}
	}
	for _, b := range items {
		for _, s := range needles {
			if bytes.Contains(b, s) {
				t.Fatalf("an item stored in the DHT contains %q", s)
			}
		}
	}
}
