package mdns

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/netnstest"
	"github.com/devicemesh/federation/registry"
)

// testMesh is a discovery.Mesh with fixed members.
type testMesh struct {
	*identity.Identity
	mu      sync.Mutex
	secret  registry.Secret
	trusted map[core.DeviceID]core.PublicKey
	addrs   func() []string
}

func (m *testMesh) Secret() (registry.Secret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.secret, nil
}

func (m *testMesh) TrustedKey(id core.DeviceID) (core.PublicKey, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.trusted[id]
	return k, ok
}

func (m *testMesh) Addrs() []string { return m.addrs() }

func seedID(b byte) *identity.Identity {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = b
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		panic(err)
	}
	return id
}

func meshSecret(b byte) registry.Secret {
	s := registry.Secret{Generation: 1}
	for i := range s.Key {
		s.Key[i] = b
	}
	return s
}

const (
	alice, bob, dave, eve = 1, 2, 3, 4 // identity seeds
	meshA, meshB          = 0xA, 0xB   // mesh secrets
)

// childMDNS runs one MDNS inside a namespace: MDNS_SEED and MDNS_MESH pick
// its identity and secret, MDNS_TRUST the seeds it trusts, MDNS_FAMILY "6"
// turns IPv4 off. It prints "found <id> <addr,...>" and "gone <id>".
func childMDNS() {
	var seed, mesh byte
	fmt.Sscanf(os.Getenv("MDNS_SEED"), "%d", &seed)
	fmt.Sscanf(os.Getenv("MDNS_MESH"), "%d", &mesh)
	m := &testMesh{Identity: seedID(seed), secret: meshSecret(mesh), trusted: map[core.DeviceID]core.PublicKey{}}
	for _, s := range strings.Split(os.Getenv("MDNS_TRUST"), ",") {
		var b byte
		fmt.Sscanf(s, "%d", &b)
		id := seedID(b)
		m.trusted[id.DeviceID()] = id.PublicKey()
	}
	m.addrs = func() []string {
		a, err := discovery.LocalAddrs("[::]:4433")
		if err != nil {
			panic(err)
		}
		return a
	}
	d, err := New(Config{Mesh: m, Interval: 300 * time.Millisecond, QueryTime: 300 * time.Millisecond,
		Expire: 3 * time.Second, DisableIPv4: os.Getenv("MDNS_FAMILY") == "6"})
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	err = d.Run(context.Background(), core.PeerInfo{Device: m.DeviceID()}, func(p core.PeerInfo) {
		mu.Lock()
		defer mu.Unlock()
		if len(p.Addrs) == 0 {
			fmt.Printf("gone %x\n", p.Device[:])
			return
		}
		fmt.Printf("found %x %s\n", p.Device[:], strings.Join(p.Addrs, ","))
	})
	fmt.Fprintln(os.Stderr, "run:", err)
	os.Exit(1)
}

func hexID(seed byte) string { id := seedID(seed).DeviceID(); return hex.EncodeToString(id[:]) }

// foundAt matches a "found" line for seed that lists addr.
func foundAt(seed byte, addr string) func(string) bool {
	return func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 3 && f[0] == "found" && f[1] == hexID(seed) && slices.Contains(strings.Split(f[2], ","), addr)
	}
}

// TestMDNSAcrossNamespaces runs devices in network namespaces joined by a
// bridge: alice and bob (mesh A) find each other over IPv4, dave (mesh A,
// IPv6 only) finds alice over IPv6, alice follows bob to a new address
// and reports dave gone once he stops, and eve (mesh B, though she knows every key of mesh A and mesh A trusts
// hers) is never found by anyone nor finds anyone.
func TestMDNSAcrossNamespaces(t *testing.T) {
	if netnstest.Role() == "mdns" {
		childMDNS()
		return
	}
	netnstest.Require(t)
	lan := netnstest.New(t, 4, 1)
	ctx := context.Background()
	start := func(i int, seed, mesh byte, trust string, family string) *netnstest.Proc {
		return lan.Start(t, i, "TestMDNSAcrossNamespaces", "mdns",
			fmt.Sprintf("MDNS_SEED=%d", seed), fmt.Sprintf("MDNS_MESH=%d", mesh), "MDNS_TRUST="+trust, "MDNS_FAMILY="+family)
	}
	trustA := fmt.Sprintf("%d,%d,%d,%d", alice, bob, dave, eve)
	pa := start(0, alice, meshA, trustA, "")
	pb := start(1, bob, meshA, trustA, "")
	pd := start(2, dave, meshA, trustA, "6")
	pe := start(3, eve, meshB, trustA, "")

	const wait = 20 * time.Second
	pa.Await(ctx, wait, "alice finding bob at his IPv4 address", foundAt(bob, lan.IPv4(1, 2)+":4433"))
	pb.Await(ctx, wait, "bob finding alice", foundAt(alice, lan.IPv4(0, 1)+":4433"))
	pd.Await(ctx, wait, "dave (IPv6 only) finding alice", foundAt(alice, "["+lan.IPv6(1)+"]:4433"))

	lan.Readdress(t, 1, 22, false)
	pa.Await(ctx, wait, "alice following bob to his new address", foundAt(bob, lan.IPv4(1, 22)+":4433"))

	// Dave switched off: alice reports him gone once Expire (3 s) passes.
	pd.Kill()
	pa.Await(ctx, wait, "alice reporting dave gone", func(l string) bool { return l == "gone "+hexID(dave) })
	for _, l := range pa.Lines() {
		if l == "gone "+hexID(bob) {
			t.Fatal("alice reported bob gone while he was up")
		}
	}

	for _, p := range []*netnstest.Proc{pa, pb, pd} {
		for _, l := range p.Lines() {
			if strings.Contains(l, hexID(eve)) {
				t.Fatalf("a member of mesh A heard eve of mesh B: %s", l)
			}
		}
	}
	if l := pe.Lines(); len(l) > 0 {
		t.Fatalf("eve of mesh B heard mesh A: %q", l)
	}
}
