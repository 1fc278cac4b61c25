package dht_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/discovery/dht"
	"github.com/devicemesh/federation/discovery/dht/dhttest"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
)

// fakeMesh is a discovery.Mesh over a real identity, a settable secret,
// trusted set and address list.
type fakeMesh struct {
	*identity.Identity
	mu      sync.Mutex
	sec     registry.Secret
	trusted map[core.DeviceID]core.PublicKey
	addrs   []string
}

func (m *fakeMesh) Secret() (registry.Secret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sec.Generation == 0 {
		return registry.Secret{}, discovery.ErrNoSecret
	}
	return m.sec, nil
}

func (m *fakeMesh) TrustedKey(id core.DeviceID) (core.PublicKey, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.trusted[id]
	return k, ok
}

func (m *fakeMesh) Addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.addrs)
}

func (m *fakeMesh) devices() []core.DeviceID {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []core.DeviceID
	for id := range m.trusted {
		out = append(out, id)
	}
	return out
}

func (m *fakeMesh) set(f func(m *fakeMesh)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// device is one fake device running the DHT mechanism.
type device struct {
	name   string
	mesh   *fakeMesh
	d      *dht.Discoverer
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	views  map[core.DeviceID][]string // what found reported last, per device
	events []core.PeerInfo
}

// mesh makes n devices sharing one secret generation, each trusting all.
func newMeshes(t *testing.T, n int) []*fakeMesh {
	t.Helper()
	sec := registry.Secret{Generation: 1}
	if _, err := rand.Read(sec.Key[:]); err != nil {
		t.Fatal(err)
	}
	var ms []*fakeMesh
	trusted := map[core.DeviceID]core.PublicKey{}
	for i := range n {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		trusted[id.DeviceID()] = id.PublicKey()
		ms = append(ms, &fakeMesh{Identity: id, sec: sec, addrs: []string{fmt.Sprintf("127.0.0.1:%d", 41000+i)}})
	}
	for _, m := range ms {
		m.trusted = map[core.DeviceID]core.PublicKey{}
		for id, k := range trusted {
			m.trusted[id] = k
		}
	}
	return ms
}

// start runs the mechanism for m on nw with short lookups. Republication
// is slow (a minute; announcements expire after three) unless republish
// says otherwise, so that a device seen going went by its withdrawal.
func start(t *testing.T, name string, nw *dhttest.Network, m *fakeMesh, period, republish time.Duration) *device {
	t.Helper()
	if republish == 0 {
		republish = time.Minute
	}
	return startWith(t, name, dht.Config{
		Mesh: m, Devices: m.devices, Bootstrap: nw.Bootstrap(), Listen: "127.0.0.1:0",
		Period: period, Republish: republish, Lookup: 200 * time.Millisecond,
		Slack: 100 * time.Millisecond, OpTimeout: 5 * time.Second,
	})
}

// startWith runs the mechanism configured by cfg (whose Mesh is a
// *fakeMesh).
func startWith(t *testing.T, name string, cfg dht.Config) *device {
	t.Helper()
	m := cfg.Mesh.(*fakeMesh)
	d, err := dht.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dev := &device{name: name, mesh: m, d: d, cancel: cancel, done: make(chan error, 1), views: map[core.DeviceID][]string{}}
	go func() {
		dev.done <- d.Run(ctx, core.PeerInfo{Device: m.DeviceID()}, func(p core.PeerInfo) {
			dev.mu.Lock()
			defer dev.mu.Unlock()
			dev.views[p.Device] = p.Addrs
			dev.events = append(dev.events, p)
		})
	}()
	t.Cleanup(func() { dev.stop(t) })
	return dev
}

// stop ends Run (withdrawing the announcement) once.
func (dev *device) stop(t *testing.T) {
	if dev.cancel == nil {
		return
	}
	dev.cancel()
	dev.cancel = nil
	select {
	case err := <-dev.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Run returned %v, want context.Canceled", dev.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s: Run did not return", dev.name)
	}
}

// view returns what dev last heard of id (nil: nothing or gone).
func (dev *device) view(id core.DeviceID) []string {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	return slices.Clone(dev.views[id])
}

// heard reports whether found ever reported addr for id.
func (dev *device) heard(id core.DeviceID, addr string) bool {
	dev.mu.Lock()
	defer dev.mu.Unlock()
	for _, e := range dev.events {
		if e.Device == id && slices.Contains(e.Addrs, addr) {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDHTDiscoveryAppearChangeGo checks the contract on a loopback DHT: a
// device's addresses appear at the other, a change of address is reported,
// and when the device stops its withdrawal is reported as gone.
func TestDHTDiscoveryAppearChangeGo(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 2)
	a := start(t, "a", nw, ms[0], time.Hour, 0)
	b := start(t, "b", nw, ms[1], time.Hour, 0)
	idA, idB := ms[0].DeviceID(), ms[1].DeviceID()
	waitFor(t, "b to find a", func() bool { return slices.Equal(b.view(idA), []string{"127.0.0.1:41000"}) })
	waitFor(t, "a to find b", func() bool { return slices.Equal(a.view(idB), []string{"127.0.0.1:41001"}) })

	ms[0].set(func(m *fakeMesh) { m.addrs = []string{"127.0.0.1:42000", "[::1]:42000"} })
	waitFor(t, "b to follow a's new addresses", func() bool {
		return slices.Equal(b.view(idA), []string{"127.0.0.1:42000", "[::1]:42000"})
	})

	a.stop(t)
	waitFor(t, "b to see a go", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		last := b.events[len(b.events)-1]
		return last.Device == idA && last.Addrs == nil
	})
	for _, e := range b.events {
		if e.Device == idB {
			t.Fatalf("b reported itself: %+v", e)
		}
	}
}

// TestDHTLateStarterFoundSoon checks the warm-up of lookups: b starts
// alone and finds nothing; a starts a moment later; b, whose lookups are a
// minute apart once warmed up, finds a within seconds all the same.
func TestDHTLateStarterFoundSoon(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 2)
	cfg := func(m *fakeMesh) dht.Config {
		return dht.Config{Mesh: m, Devices: m.devices, Bootstrap: nw.Bootstrap(), Listen: "127.0.0.1:0",
			Lookup: time.Minute, OpTimeout: 5 * time.Second}
	}
	b := startWith(t, "b", cfg(ms[1]))
	waitFor(t, "b to publish", func() bool { return len(nw.Items()) > 0 })
	time.Sleep(500 * time.Millisecond) // b's first lookup, which finds nothing
	idA := ms[0].DeviceID()
	if b.view(idA) != nil {
		t.Fatal("b found a before a started")
	}
	startWith(t, "a", cfg(ms[0]))
	started := time.Now()
	waitFor(t, "b to find the late starter a", func() bool { return b.view(idA) != nil })
	if d := time.Since(started); d > 20*time.Second {
		t.Fatalf("b found a after %v", d)
	}
}

// TestDHTPublishesOnceSecretArrives checks that a device that starts
// before it holds the mesh secret (pairing still under way) publishes
// within seconds of receiving it, not a lookup period later.
func TestDHTPublishesOnceSecretArrives(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 2)
	sec, _ := ms[0].Secret()
	ms[0].set(func(m *fakeMesh) { m.sec = registry.Secret{} })
	cfg := func(m *fakeMesh, lookup time.Duration) dht.Config {
		return dht.Config{Mesh: m, Devices: m.devices, Bootstrap: nw.Bootstrap(), Listen: "127.0.0.1:0",
			Lookup: lookup, OpTimeout: 5 * time.Second}
	}
	b := startWith(t, "b", cfg(ms[1], 200*time.Millisecond))
	// a's lookup period is a minute: only its warm-up pace of retrying
	// the publication can make it findable soon.
	startWith(t, "a", cfg(ms[0], time.Minute))
	time.Sleep(time.Second)
	idA := ms[0].DeviceID()
	if b.view(idA) != nil {
		t.Fatal("b found a, which holds no secret")
	}
	ms[0].set(func(m *fakeMesh) { m.sec = sec })
	got := time.Now()
	waitFor(t, "b to find a once a holds the secret", func() bool { return b.view(idA) != nil })
	if d := time.Since(got); d > 15*time.Second {
		t.Fatalf("a published %v after receiving the secret", d)
	}
}

// TestDHTDiscoveryExpiry checks that republications are reported (with
// their time) and that a device that stops republishing
// without withdrawing (here: it lost the mesh secret) is reported gone once
// its announcement is older than Expire (three republication periods).
func TestDHTDiscoveryExpiry(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 2)
	start(t, "a", nw, ms[0], time.Hour, time.Second)
	b := start(t, "b", nw, ms[1], time.Hour, time.Second)
	idA := ms[0].DeviceID()
	waitFor(t, "b to find a", func() bool { return b.view(idA) != nil })
	// Each republication is reported again, with its newer time (the
	// node's last_seen follows it), though the addresses did not change.
	waitFor(t, "b to hear a's republication", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		var seen []time.Time
		for _, e := range b.events {
			if e.Device == idA && e.Addrs != nil && (len(seen) == 0 || e.Seen.After(seen[len(seen)-1])) {
				seen = append(seen, e.Seen)
			}
		}
		return len(seen) >= 2
	})
	ms[0].set(func(m *fakeMesh) { m.sec = registry.Secret{} })
	lost := time.Now()
	waitFor(t, "b to see a expire", func() bool { return b.view(idA) == nil })
	if d := time.Since(lost); d < 2*time.Second {
		t.Fatalf("a reported gone %v after its last possible republication, before it expired (3 s)", d)
	}
}

// TestDHTRevokedDeviceIsBlind checks that after a revocation and a secret
// rotation the revoked device learns nothing new: the others publish under
// keys derived from the new generation (and withdraw the old ones), so when
// a moves, b follows it and the revoked r does not.
func TestDHTRevokedDeviceIsBlind(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 3)
	a := start(t, "a", nw, ms[0], time.Hour, 0)
	b := start(t, "b", nw, ms[1], time.Hour, 0)
	r := start(t, "r", nw, ms[2], time.Hour, 0)
	idA, idB, idR := ms[0].DeviceID(), ms[1].DeviceID(), ms[2].DeviceID()
	waitFor(t, "r to find a and b", func() bool { return r.view(idA) != nil && r.view(idB) != nil })
	waitFor(t, "b to find a", func() bool { return b.view(idA) != nil })
	_ = a

	// Revoke r: a and b rotate to generation 2 and stop trusting r; r keeps
	// generation 1 (it is not sent the new one).
	next := registry.Secret{Generation: 2}
	if _, err := rand.Read(next.Key[:]); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		m.set(func(m *fakeMesh) { m.sec = next; delete(m.trusted, idR) })
	}
	const moved = "127.0.0.1:43210"
	ms[0].set(func(m *fakeMesh) { m.addrs = []string{moved} })
	waitFor(t, "b to follow a under the new generation", func() bool { return slices.Equal(b.view(idA), []string{moved}) })
	waitFor(t, "r to see a withdraw from the old generation", func() bool { return r.view(idA) == nil })
	// Several more lookup rounds of r.
	time.Sleep(1500 * time.Millisecond)
	if r.heard(idA, moved) {
		t.Fatalf("revoked device found a's new address %s", moved)
	}
	if v := r.view(idA); v != nil {
		t.Fatalf("revoked device still sees a at %v", v)
	}
}

// TestDHTOutsiderLearnsNothing runs three devices through several key
// rotations (epochs of one second), an address change and a stop, then
// reads every item every DHT node of the network stores, as an outsider
// running those nodes would: no address, port or device id (in any
// encoding) appears, every value has the same size, and no two items of
// one device in different epochs share a key or any 8-byte run.
func TestDHTOutsiderLearnsNothing(t *testing.T) {
	nw := dhttest.Start(t, 6)
	ms := newMeshes(t, 3)
	const period = time.Second
	var devs []*device
	for i, m := range ms {
		devs = append(devs, start(t, fmt.Sprintf("d%d", i), nw, m, period, 0))
	}
	for _, d := range devs {
		for _, m := range ms {
			if m != d.mesh {
				waitFor(t, "every device to find every other", func() bool { return d.view(m.DeviceID()) != nil })
			}
		}
	}
	ms[0].set(func(m *fakeMesh) { m.addrs = []string{"127.0.0.1:45678"} })
	waitFor(t, "d1 to follow d0", func() bool { return slices.Equal(devs[1].view(ms[0].DeviceID()), []string{"127.0.0.1:45678"}) })
	time.Sleep(2500 * time.Millisecond) // more epochs
	devs[2].stop(t)

	items := nw.Items()
	if len(items) < 6 {
		t.Fatalf("the DHT stores %d items: too few to judge", len(items))
	}
	var secrets [][]byte
	for _, m := range ms {
		id := m.DeviceID()
		pk := m.PublicKey()
		secrets = append(secrets, id[:], pk[:], []byte(id.String()), []byte(id.Short()),
			[]byte(hex.EncodeToString(id[:])), []byte(hex.EncodeToString(pk[:])))
	}
	for _, addr := range []string{"127.0.0.1:41000", "127.0.0.1:41001", "127.0.0.1:41002", "127.0.0.1:45678"} {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		bin := net.ParseIP(host).To4()
		bin = binary.BigEndian.AppendUint16(bin, uint16(p))
		secrets = append(secrets, []byte(addr), []byte(port), bin)
	}
	for _, b := range nw.StoredBytes() {
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Fatalf("a stored item contains %q", s)
			}
		}
	}

	// Every value has one size; group items by device through the keys
	// members can compute, and compare epochs.
	byDevice := map[core.DeviceID]map[uint64][]byte{}
	sec, _ := ms[0].Secret()
	now := discovery.Epoch(time.Now(), period)
	for _, it := range items {
		raw, err := bencode.Marshal(it.V)
		if err != nil {
			t.Fatal(err)
		}
		var v []byte
		if err := bencode.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		if len(v) != dht.ValueSize {
			t.Fatalf("stored value of %d bytes, want every one of %d", len(v), dht.ValueSize)
		}
		whole := slices.Concat(it.K[:], it.Sig[:], v)
		for _, m := range ms {
			for e := now - 30; e <= now+1; e++ {
				var k [32]byte
				copy(k[:], dht.ItemKey(sec, e, m.DeviceID()).Public().(ed25519.PublicKey))
				if k == it.K {
					if byDevice[m.DeviceID()] == nil {
						byDevice[m.DeviceID()] = map[uint64][]byte{}
					}
					byDevice[m.DeviceID()][e] = whole
				}
			}
		}
	}
	for id, per := range byDevice {
		if len(per) < 2 {
			continue
		}
		var all [][]byte
		for _, w := range per {
			all = append(all, w)
		}
		for i := range all {
			for j := i + 1; j < len(all); j++ {
				for o := 0; o+8 <= len(all[i]); o++ {
					if bytes.Contains(all[j], all[i][o:o+8]) {
						t.Fatalf("items of %s in two epochs share the bytes %x", id.Short(), all[i][o:o+8])
					}
				}
			}
		}
	}
	epochsSeen := 0
	for _, per := range byDevice {
		epochsSeen = max(epochsSeen, len(per))
	}
	if epochsSeen < 2 {
		t.Fatalf("no device has items in two epochs (saw %d): the rotation was not exercised", epochsSeen)
	}
}

// TestDHTTwoMeshesNeverMeet runs two meshes of two devices on one DHT:
// each device finds its own mesh's other device and hears nothing of the
// other mesh, even where it trusts a device of the other mesh (its
// announcements are at targets, and sealed under a secret, it does not
// have).
func TestDHTTwoMeshesNeverMeet(t *testing.T) {
	nw := dhttest.Start(t, 6)
	m1, m2 := newMeshes(t, 2), newMeshes(t, 2)
	// m2[0] also trusts m1[0] (say it was once paired with it).
	m2[0].set(func(m *fakeMesh) { m.trusted[m1[0].DeviceID()] = m1[0].PublicKey() })
	var devs []*device
	for i, m := range append(slices.Clone(m1), m2...) {
		devs = append(devs, start(t, fmt.Sprintf("d%d", i), nw, m, time.Hour, 0))
	}
	waitFor(t, "each device to find its mesh's other device", func() bool {
		return devs[0].view(m1[1].DeviceID()) != nil && devs[1].view(m1[0].DeviceID()) != nil &&
			devs[2].view(m2[1].DeviceID()) != nil && devs[3].view(m2[0].DeviceID()) != nil
	})
	time.Sleep(time.Second) // more lookups
	for i, d := range devs {
		own := m1
		if i >= 2 {
			own = m2
		}
		d.mu.Lock()
		for _, e := range d.events {
			if e.Device != own[0].DeviceID() && e.Device != own[1].DeviceID() {
				d.mu.Unlock()
				t.Fatalf("%s heard of a device of the other mesh: %+v", d.name, e)
			}
		}
		d.mu.Unlock()
	}
}
