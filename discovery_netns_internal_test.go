package federation

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/internal/netnstest"
)

// The node tests of discovery run each node in a network namespace of its
// own, as a child process (the test binary re-executed under ip netns exec:
// see internal/netnstest), driven over stdin with one command per line:
//
//	start              open the node on $FED_DIR (default config: LAN
//	                   discovery on) and Start it: "started <id>"
//	invite             "invite <qr> <code>"
//	join <qr>          pair with the inviter: "joined"
//	joincode <code>    pair by the code alone (LAN): "joined"
//	secret             "secret <generation>" once the mesh secret is held
//	gen                "gen <generation>" (0: none)
//	revoke <id>        revoke a device: "revoked"
//	put <k> <v>        write notes/k: "put <k>"
//	wait <k> <v>       "got <k>" once notes/k holds v
//	stats              "stats <json of Stats.Discovery>"
//	stop               Close the node: "stopped"
//
// and it prints "event <kind> <device>" for every peer event.
func nodeChild() {
	ctx := context.Background()
	out := make(chan string, 64)
	go func() {
		for l := range out {
			fmt.Println(l)
		}
	}()
	say := func(f string, a ...any) { out <- fmt.Sprintf(f, a...) }
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(3)
	}
	var n *Node
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "start":
			var err error
			n, err = New(Config{Dir: os.Getenv("FED_DIR")}) // the defaults: LAN discovery on
			if err != nil {
				fail("open", err)
			}
			sub := n.Subscribe(SubscribeOptions{})
			go func() {
				for e := range sub.C {
					if e.Kind == EventPeerConnected || e.Kind == EventPeerDisconnected {
						say("event %s %s", e.Kind, e.Origin)
					}
				}
			}()
			if err := n.Start(ctx); err != nil {
				fail("start", err)
			}
			say("started %s", n.DeviceID())
		case "invite":
			inv, err := n.Invite(ctx, InviteOptions{Approve: func(context.Context, PairRequest) (bool, error) { return true, nil }})
			if err != nil {
				fail("invite", err)
			}
			say("invite %s %s", inv.QR, inv.Code)
		case "join":
			if _, err := n.Join(ctx, f[1], JoinOptions{}); err != nil {
				fail("join", err)
			}
			say("joined")
		case "joincode":
			if _, err := n.JoinCode(ctx, f[1], JoinOptions{}); err != nil {
				fail("join by code", err)
			}
			say("joined")
		case "secret":
			go func() {
				for {
					if s, err := n.c.Reg.MeshSecret(); err == nil {
						say("secret %d", s.Generation)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
		case "gen":
			var g uint64
			if s, err := n.MeshSecret(); err == nil {
				g = s.Generation
			}
			say("gen %d", g)
		case "revoke":
			id, err := ParseDeviceID(f[1])
			if err != nil {
				fail("revoke", err)
			}
			if err := n.RevokeDevice(ctx, id); err != nil {
				fail("revoke", err)
			}
			say("revoked")
		case "put":
			if err := n.Put(ctx, "notes", f[1], []byte(f[2])); err != nil {
				fail("put", err)
			}
			say("put %s", f[1])
		case "wait":
			go func(k, v string) {
				for {
					if got, err := n.Get(ctx, "notes", k); err == nil && string(got) == v {
						say("got %s", k)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}(f[1], f[2])
		case "stats":
			st, err := n.Stats(ctx)
			if err != nil {
				fail("stats", err)
			}
			b, _ := json.Marshal(st.Discovery)
			say("stats %s", b)
		case "stop":
			if err := n.Close(); err != nil {
				fail("close", err)
			}
			say("stopped")
		}
	}
	os.Exit(0)
}

func prefixed(p string) func(string) bool {
	return func(l string) bool { return strings.HasPrefix(l, p) }
}

// stats asks p for its discovery stats.
func stats(t *testing.T, p *netnstest.Proc) DiscoveryStats {
	t.Helper()
	p.Send("stats")
	l := p.Await(context.Background(), 10*time.Second, "stats", prefixed("stats "))
	var s DiscoveryStats
	if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "stats ")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// awaitReach polls p's stats until its only device satisfies ok.
func awaitReach(t *testing.T, p *netnstest.Proc, what string, ok func(DeviceReach) bool) {
	t.Helper()
	for deadline := time.Now().Add(40 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s := stats(t, p)
		if len(s.Devices) == 1 && ok(s.Devices[0]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, s.Devices)
		}
	}
}

// TestLANDiscoveryAcrossNamespaces: alice and bob pair, stop, both move to
// new addresses (so every address they exchanged is stale) and start again
// with the default configuration: they must find each other by mDNS alone
// and sync. Then bob moves while running, and they must sync again over his
// new address. Eve and frank, another mesh on the same LAN, sync with each
// other and never meet alice or bob (no session, no event, no stats entry).
func TestLANDiscoveryAcrossNamespaces(t *testing.T) {
	if netnstest.Role() == "node" {
		nodeChild()
		return
	}
	netnstest.Require(t)
	lan := netnstest.New(t, 4, 2)
	ctx := context.Background()
	const wait = 40 * time.Second
	start := func(i int) (*netnstest.Proc, string) {
		p := lan.Start(t, i, "TestLANDiscoveryAcrossNamespaces", "node", "FED_DIR="+t.TempDir())
		p.Send("start")
		l := p.Await(ctx, wait, "start", prefixed("started "))
		return p, strings.Fields(l)[1]
	}
	pa, alice := start(0)
	pb, bob := start(1)
	pe, eve := start(2)
	pf, frank := start(3)

	// Eve and frank are another mesh on the same LAN.
	pe.Send("invite")
	pf.Send("join " + strings.Fields(pe.Await(ctx, wait, "eve's invitation", prefixed("invite ")))[1])
	pf.Await(ctx, wait, "frank joining eve", prefixed("joined"))

	pa.Send("invite")
	qr := strings.Fields(pa.Await(ctx, wait, "invitation", prefixed("invite ")))[1]
	pb.Send("join " + qr)
	pb.Await(ctx, wait, "join", prefixed("joined"))
	for _, p := range []*netnstest.Proc{pa, pb} {
		p.Send("secret")
		p.Await(ctx, wait, "the mesh secret", prefixed("secret "))
	}
	// Let bob's own registry ops reach alice before the restart.
	pb.Send("put before x")
	pa.Send("wait before x")
	pa.Await(ctx, wait, "the first sync", prefixed("got before"))
	for _, p := range []*netnstest.Proc{pa, pb} {
		p.Send("stop")
		p.Await(ctx, wait, "stop", prefixed("stopped"))
	}

	lan.Readdress(t, 0, 11, true)
	lan.Readdress(t, 1, 12, true)
	pa.Send("start")
	pa.Await(ctx, wait, "restart", prefixed("started "))
	pb.Send("start")
	pb.Await(ctx, wait, "restart", prefixed("started "))
	pa.Send("put k1 v1")
	pb.Send("wait k1 v1")
	pb.Await(ctx, wait, "bob receiving alice's write after both moved", prefixed("got k1"))
	pa.Await(ctx, wait, "alice's peer-connected event for bob", prefixed("event peer-connected "+bob))

	if s := stats(t, pa); len(s.Devices) != 1 || s.Devices[0].Device.String() != bob {
		t.Fatalf("alice's stats list %+v, want bob only", s.Devices)
	}
	awaitReach(t, pa, "alice seeing bob by mDNS at his new address", func(d DeviceReach) bool {
		return d.Mechanism == "mdns" && slices.Contains(d.Addrs, lan.IPv4(1, 12)+":"+port(d.Addrs)) && !d.LastSeen.IsZero()
	})

	lan.Readdress(t, 1, 22, false)
	pb.Send("put k2 v2")
	pa.Send("wait k2 v2")
	pa.Await(ctx, wait, "alice receiving bob's write after he moved", prefixed("got k2"))
	awaitReach(t, pa, "alice following bob to his new address", func(d DeviceReach) bool {
		return d.Connected && len(d.Addrs) > 0 && strings.HasPrefix(d.Addrs[0], lan.IPv4(1, 22)+":") && strings.HasPrefix(d.Known[0], lan.IPv4(1, 22)+":")
	})

	// Eve and frank found each other by mDNS too, and nobody else.
	pf.Send("put other-mesh y")
	pe.Send("wait other-mesh y")
	pe.Await(ctx, wait, "eve syncing with frank", prefixed("got other-mesh"))
	for _, p := range []*netnstest.Proc{pe, pf} {
		s := stats(t, p)
		if len(s.Devices) != 1 || (s.Devices[0].Device.String() != eve && s.Devices[0].Device.String() != frank) {
			t.Fatalf("a device of the other mesh knows of %+v", s.Devices)
		}
	}
	meshOf := map[string]string{alice: "A", bob: "A", eve: "B", frank: "B"}
	for p, mine := range map[*netnstest.Proc]string{pa: "A", pb: "A", pe: "B", pf: "B"} {
		for _, l := range p.Lines() {
			if strings.HasPrefix(l, "started ") {
				continue
			}
			for id, m := range meshOf {
				if m != mine && strings.Contains(l, id) {
					t.Fatalf("the meshes met: %s", l)
				}
			}
		}
	}
}

// port returns the port of the first address.
func port(addrs []string) string {
	if len(addrs) == 0 {
		return ""
	}
	i := strings.LastIndex(addrs[0], ":")
	return addrs[0][i+1:]
}

// TestPairByCodeAcrossNamespaces: bob, a new device that knows nothing but
// the code alice shows, finds alice on the LAN through the code-derived
// announcement, pairs and syncs.
func TestPairByCodeAcrossNamespaces(t *testing.T) {
	if netnstest.Role() == "node" {
		nodeChild()
		return
	}
	netnstest.Require(t)
	lan := netnstest.New(t, 2, 3)
	ctx := context.Background()
	const wait = 40 * time.Second
	var procs []*netnstest.Proc
	for i := range 2 {
		p := lan.Start(t, i, "TestPairByCodeAcrossNamespaces", "node", "FED_DIR="+t.TempDir())
		p.Send("start")
		p.Await(ctx, wait, "start", prefixed("started "))
		procs = append(procs, p)
	}
	pa, pb := procs[0], procs[1]
	pa.Send("invite")
	code := strings.Fields(pa.Await(ctx, wait, "invitation", prefixed("invite ")))[2]
	pb.Send("joincode " + strings.ToLower(code))
	pb.Await(ctx, wait, "bob joining by the code", prefixed("joined"))
	pa.Send("put hello world")
	pb.Send("wait hello world")
	pb.Await(ctx, wait, "bob receiving alice's write", prefixed("got hello"))
}

// gen returns p's mesh secret generation.
func gen(t *testing.T, p *netnstest.Proc) uint64 {
	t.Helper()
	p.Send("gen")
	var g uint64
	fmt.Sscanf(p.Await(context.Background(), 10*time.Second, "gen", prefixed("gen ")), "gen %d", &g)
	return g
}

// TestRevokedDeviceBlindOnLAN: carol is revoked and the secret rotated;
// after all three devices move and restart, alice and bob find each other
// by mDNS and sync, and carol, still holding the old generation, finds
// neither of them.
func TestRevokedDeviceBlindOnLAN(t *testing.T) {
	if netnstest.Role() == "node" {
		nodeChild()
		return
	}
	netnstest.Require(t)
	lan := netnstest.New(t, 3, 4)
	ctx := context.Background()
	const wait = 40 * time.Second
	var procs []*netnstest.Proc
	var ids []string
	for i := range 3 {
		p := lan.Start(t, i, "TestRevokedDeviceBlindOnLAN", "node", "FED_DIR="+t.TempDir())
		p.Send("start")
		ids = append(ids, strings.Fields(p.Await(ctx, wait, "start", prefixed("started ")))[1])
		procs = append(procs, p)
	}
	pa, pb, pc := procs[0], procs[1], procs[2]
	for _, p := range []*netnstest.Proc{pb, pc} {
		pa.Send("invite")
		p.Send("join " + strings.Fields(pa.Await(ctx, wait, "invitation", prefixed("invite ")))[1])
		p.Await(ctx, wait, "join", prefixed("joined"))
	}
	pa.Send("put all x")
	for _, p := range []*netnstest.Proc{pb, pc} {
		p.Send("wait all x")
		p.Await(ctx, wait, "the first sync", prefixed("got all"))
	}
	old := gen(t, pa)
	for deadline := time.Now().Add(wait); gen(t, pc) != old || gen(t, pb) != old; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the three devices never shared one secret generation")
		}
	}
	pa.Send("revoke " + ids[2])
	pa.Await(ctx, wait, "revocation", prefixed("revoked"))
	for deadline := time.Now().Add(wait); gen(t, pa) <= old || gen(t, pb) != gen(t, pa); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice and bob never got the rotated secret")
		}
	}
	if g := gen(t, pc); g > old {
		t.Fatalf("revoked carol holds generation %d (old %d)", g, old)
	}
	for _, p := range procs {
		p.Send("stop")
		p.Await(ctx, wait, "stop", prefixed("stopped"))
	}
	for i := range 3 {
		lan.Readdress(t, i, 30+i, true)
	}
	for _, p := range procs {
		p.Send("start")
		p.Await(ctx, wait, "restart", prefixed("started "))
	}
	pa.Send("put after y")
	pb.Send("wait after y")
	pb.Await(ctx, wait, "bob syncing with alice after the move", prefixed("got after"))
	time.Sleep(4 * time.Second) // many lookups for carol
	t.Logf("carol: generation %d (old %d), ready %v", gen(t, pc), old, stats(t, pc).Ready)
	for _, d := range stats(t, pc).Devices {
		if d.Connected || d.Mechanism != "" {
			t.Fatalf("revoked carol found %+v", d)
		}
	}
	for _, d := range stats(t, pa).Devices {
		if d.Device.String() == ids[2] && (d.Connected || d.NotConnected != "revoked") {
			t.Fatalf("alice's view of carol: %+v", d)
		}
	}
}
