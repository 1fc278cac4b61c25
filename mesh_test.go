package federation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// meshWrites is what each device of TestMeshConcurrentWritesNoWaste writes.
const meshWrites = 10000

// TestMeshConcurrentWritesNoWaste: three devices on real QUIC, every pair
// connected, each writing 10,000 records at the same time (its own keys and
// keys all three write, in transactions of 1 to 400 changes). No session
// ends (least of all for a protocol violation), no device sends a peer a
// change that peer already holds (its own changes above all), and the mesh
// converges through deltas alone: no Merkle repair.
func TestMeshConcurrentWritesNoWaste(t *testing.T) {
	runMesh(t, func(n *federation.Node) string { return n.Addr() })
}

// TestMeshConcurrentWritesNoWasteLossy: the same through UDP proxies that
// drop 5% of the packets, duplicate 1% and delay 2% behind later ones.
// QUIC recovers the packets; what changes is timing: sessions see their
// frames late and in bursts. Nothing may change in the outcome.
func TestMeshConcurrentWritesNoWasteLossy(t *testing.T) {
	var proxies []*udpProxy
	t.Cleanup(func() {
		var c proxyCounts
		for _, p := range proxies {
			c.add(p.counts())
		}
		t.Logf("proxies: %d packets, %d dropped, %d duplicated, %d delayed", c.packets, c.dropped, c.duplicated, c.delayed)
	})
	runMesh(t, func(n *federation.Node) string {
		p := startUDPProxy(t, n.Addr(), uint64(len(proxies)+1), proxyFaults{drop: 0.05, duplicate: 0.01, delay: 0.02})
		proxies = append(proxies, p)
		return p.addr()
	})
}

// connectedMesh starts three devices on real QUIC that trust each other,
// connects every pair (dial gives the address a device is dialled at) and
// waits until each holds a session with both others.
func connectedMesh(t *testing.T, dial func(*federation.Node) string) []*federation.Node {
	t.Helper()
	ctx := context.Background()
	nodes := []*federation.Node{quicNode(t, "phone", immediateAnalytics), quicNode(t, "laptop", immediateAnalytics), quicNode(t, "tablet", immediateAnalytics)}
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.TrustDevice(b.PublicKey())
			}
		}
	}
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			require.NoError(t, nodes[i].Connect(ctx, dial(nodes[j]), nodes[j].DeviceID()))
		}
	}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.Peers()) != len(nodes)-1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "every pair connects")
	return nodes
}

// runMesh runs the three-device test; dial returns the address at which a
// device is dialed.
func runMesh(t *testing.T, dial func(*federation.Node) string) {
	ctx := context.Background()
	nodes := connectedMesh(t, dial)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for d, n := range nodes {
		wg.Go(func() { errs[d] = meshWrite(ctx, n, d) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	wrote := time.Since(start)

	// Each device also publishes a signed audit head now and then
	// (internal/anchor: after every 256 audit entries, and the syncer
	// records one per frame sent and per commit received): a change of
	// its own beyond its writes, synced like them. So the mesh has
	// converged when every device holds the same version vector, covering
	// all of every device's writes, and the same roots; and then each
	// change of that vector (writes and heads) has crossed each of the
	// two links towards the other devices once.
	sentChanges := func() (sent uint64) {
		for _, n := range nodes {
			for _, p := range n.Peers() {
				sent += p.ChangesSent
			}
		}
		return sent
	}
	var total, sentAt uint64 // at convergence: changes of every origin, changes sent
	converged := func() bool {
		var vv federation.VersionVector
		for i, n := range nodes {
			st, err := n.Stats(ctx)
			if err != nil || st.VersionVector[n.DeviceID()] < meshWrites {
				return false
			}
			if i == 0 {
				vv = st.VersionVector
			} else if st.VersionVector.Compare(vv) != 0 {
				return false
			}
		}
		r := nodes[0].Roots()
		for _, n := range nodes[1:] {
			if fmt.Sprint(n.Roots()) != fmt.Sprint(r) {
				return false
			}
		}
		total = 0
		for _, n := range vv {
			total += n
		}
		sentAt = sentChanges()
		return sentAt == 2*total
	}
	if !assert.Eventually(t, converged, 45*time.Second, 10*time.Millisecond, "the mesh converges") {
		t.Fatalf("not converged; last seen: %d changes sent for %d changes held (want twice as many)", sentAt, total)
	}
	t.Logf("wrote in %v, converged %v after the start", wrote.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	scan := func(n *federation.Node) []string {
		var out []string
		require.NoError(t, n.Scan(ctx, "notes", federation.KeyRange{}, func(r federation.Record) error {
			out = append(out, fmt.Sprintf("%s=%q del=%v ts=%v o=%s ctx=%v", r.Key, r.Value, r.Deleted, r.Timestamp, r.Origin.Short(), r.Context))
			return nil
		}))
		return out
	}
	first := scan(nodes[0])
	require.Len(t, first, 3*meshWrites*4/5+meshShared)
	for _, n := range nodes[1:] {
		require.Equal(t, first, scan(n), "full scans are identical")
	}

	var sent, recv, echoes, redundant, repairs, records uint64
	for _, n := range nodes {
		for _, p := range n.Peers() {
			sent += p.ChangesSent
			recv += p.ChangesRecv
			echoes += p.Echoes
			redundant += p.Redundant
			repairs += p.Repairs
			records += p.RecordsSent
		}
		closed, err := n.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindSessionClosed}})
		require.NoError(t, err)
		for _, e := range closed {
			reason, _ := e.Detail.Get("reason")
			t.Errorf("%s: session with %s closed: %s", n.DeviceID().Short(), e.Device.Short(), reason.Text)
		}
		require.Len(t, n.Peers(), len(nodes)-1, "no session ended")
	}
	t.Logf("changes sent %d, received %d (minimum %d); echoes %d, redundant %d; repairs %d (%d records)",
		sent, recv, 2*3*meshWrites, echoes, redundant, repairs, records)
	require.Zero(t, echoes, "changes sent back to their origin")
	require.Zero(t, redundant, "changes sent to a peer that already held them")
	require.Zero(t, repairs, "Merkle repairs")
	require.Equal(t, 2*total, sentAt, "each change crosses each link once")
}

// meshShared is the number of keys every device of the mesh test writes.
const meshShared = 500

// meshWrite writes meshWrites records on n (device number d): four in five
// under keys of its own, one in five under keys every device writes, in
// transactions of varied sizes.
func meshWrite(ctx context.Context, n *federation.Node, d int) error {
	sizes := []int{1, 7, 400, 1, 30, 120, 3}
	value := make([]byte, 48)
	for i, k := 0, 0; i < meshWrites; k++ {
		size := min(sizes[(k+d)%len(sizes)], meshWrites-i)
		err := n.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < i+size; j++ {
				key := fmt.Sprintf("own-%d-%05d", d, j)
				if j%5 == 0 {
					key = fmt.Sprintf("shared-%04d", (j/5)%meshShared)
				}
				copy(value, fmt.Sprintf("device %d write %d", d, j))
				if err := tx.Put("notes", key, value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		i += size
	}
	return nil
}

// TestMeshRelaysWhereNoDirectLink: in a chain a - b - c, the middle device
// forwards each end's changes to the other (neither receives them
// directly); once a and c connect, each sends its own changes itself.
func TestMeshRelaysWhereNoDirectLink(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	mk := func() *federation.Node {
		return newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	}
	a, b, c := mk(), mk(), mk()
	nodes := []*federation.Node{a, b, c}
	for _, x := range nodes {
		for _, y := range nodes {
			if x != y {
				x.TrustDevice(y.PublicKey())
			}
		}
		require.NoError(t, x.Start(ctx))
	}
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, c.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Put(ctx, "notes", "from-a", []byte("a")))
	require.NoError(t, c.Put(ctx, "notes", "from-c", []byte("c")))
	waitValue(t, c, "notes", "from-a", "a")
	waitValue(t, a, "notes", "from-c", "c")

	require.NoError(t, a.Connect(ctx, c.Addr(), c.DeviceID()))
	require.Eventually(t, func() bool { return len(a.Peers()) == 2 && len(c.Peers()) == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the new Direct sets reach b
	relayed := func() uint64 {
		var n uint64
		for _, p := range b.Peers() {
			n += p.ChangesSent
		}
		return n
	}
	before := relayed()
	require.NoError(t, a.Put(ctx, "notes", "direct-a", []byte("a2")))
	require.NoError(t, c.Put(ctx, "notes", "direct-c", []byte("c2")))
	waitValue(t, c, "notes", "direct-a", "a2")
	waitValue(t, a, "notes", "direct-c", "c2")
	waitValue(t, b, "notes", "direct-c", "c2")
	waitValue(t, b, "notes", "direct-a", "a2")
	require.Equal(t, before, relayed(), "b forwards nothing once a and c are linked")
	for _, n := range nodes {
		for _, p := range n.Peers() {
			require.Zero(t, p.Echoes+p.Redundant, "%s from %s", n.DeviceID().Short(), p.Device.Short())
		}
	}
}

// TestMeshConcurrentMergesConverge: three devices on real QUIC edit the same
// analytics (union), conversation (chronological merge) and profile
// (per-field last writer wins) records at once, read-modify-write, so
// nearly every delivery is a concurrent version for the resolver. The
// mesh converges through deltas alone: merged records are identical
// everywhere (values and causal contexts), and no Merkle repair runs.
func TestMeshConcurrentMergesConverge(t *testing.T) {
	ctx := context.Background()
	nodes := connectedMesh(t, (*federation.Node).Addr)

	const edits = 150
	colls := []string{federation.CollectionAnalytics, federation.CollectionConversation, federation.CollectionProfile}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for d, n := range nodes {
		wg.Go(func() {
			for i := range edits {
				err := n.Update(ctx, func(tx *federation.Tx) error {
					key := fmt.Sprintf("k%d", i%4)
					for _, coll := range colls {
						old, err := tx.Get(coll, key)
						if err != nil && !errors.Is(err, federation.ErrNotFound) {
							return err
						}
						var v []byte
						id := fmt.Sprintf("d%d-%d", d, i)
						ts := core.MakeTimestamp(time.Now().UnixMilli(), 0)
						switch coll {
						case federation.CollectionAnalytics:
							v, err = conflict.EventsAppend(old, []byte(id))
						case federation.CollectionConversation:
							var l *crdt.Log
							if l, err = crdt.DecodeLog(old); err == nil {
								err = l.Append(crdt.Message{ID: id, Time: ts, Device: n.DeviceID(), Body: []byte(id)})
								v = l.Encode()
							}
						default:
							v, err = conflict.ProfileSet(old, fmt.Sprintf("f%d", i%7), id, ts, n.DeviceID())
						}
						if err != nil {
							return err
						}
						if err := tx.Put(coll, key, v); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs[d] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		var vv []federation.VersionVector
		for _, n := range nodes {
			st, err := n.Stats(ctx)
			if err != nil || len(st.VersionVector) < len(nodes) {
				return false
			}
			vv = append(vv, st.VersionVector)
		}
		for _, n := range nodes[1:] {
			if fmt.Sprint(n.Roots()) != fmt.Sprint(nodes[0].Roots()) {
				return false
			}
		}
		return vv[0].Compare(vv[1]) == 0 && vv[0].Compare(vv[2]) == 0
	}, 30*time.Second, 10*time.Millisecond, "the mesh converges")
	for _, coll := range colls {
		var want []string
		for i, n := range nodes {
			var got []string
			require.NoError(t, n.Scan(ctx, coll, federation.KeyRange{}, func(r federation.Record) error {
				got = append(got, fmt.Sprintf("%s=%x ts=%v o=%s ctx=%v", r.Key, r.Value, r.Timestamp, r.Origin.Short(), r.Context))
				return nil
			}))
			if i == 0 {
				want = got
				continue
			}
			require.Equal(t, want, got, "%s on device %d", coll, i)
		}
	}
	var repairs, redundant uint64
	for _, n := range nodes {
		for _, p := range n.Peers() {
			repairs += p.Repairs
			redundant += p.Redundant + p.Echoes
		}
	}
	if redundant > 0 {
		for _, n := range nodes {
			for _, p := range n.Peers() {
				t.Logf("%s from %s: redundant %d, echoes %d, changes sent %d, received %d, repairs %d",
					n.DeviceID().Short(), p.Device.Short(), p.Redundant, p.Echoes, p.ChangesSent, p.ChangesRecv, p.Repairs)
			}
		}
	}
	require.Zero(t, redundant, "changes sent to a peer that held them")
	require.Zero(t, repairs, "Merkle repairs")
}

// dialRecorder wraps a transport and keeps the sessions it dials, so that a
// test can end one.
type dialRecorder struct {
	federation.Transport
	mu    sync.Mutex
	dials map[federation.DeviceID]core.Session
}

func (d *dialRecorder) Dial(ctx context.Context, addr string, peer federation.DeviceID) (core.Session, error) {
	s, err := d.Transport.Dial(ctx, addr, peer)
	if err == nil {
		d.mu.Lock()
		d.dials[peer] = s
		d.mu.Unlock()
	}
	return s, err
}

// TestMeshForwardsOnceADirectLinkEnds: in a full mesh a, b, c, the link
// a - c ends. c tells b, which from then on forwards a's changes to c (and
// c's to a): nothing is left to a link that no longer exists.
func TestMeshForwardsOnceADirectLinkEnds(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	rec := &dialRecorder{dials: map[federation.DeviceID]core.Session{}}
	mk := func(wrap bool) *federation.Node {
		return newNode(t, memstore.New(), func(c *federation.Config) {
			c.Network.Transport = func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
				tr, err := memFactory(net)(ctx, p)
				if err != nil || !wrap {
					return tr, err
				}
				rec.Transport = tr
				return rec, nil
			}
		})
	}
	a, b, c := mk(true), mk(false), mk(false)
	nodes := []*federation.Node{a, b, c}
	for _, x := range nodes {
		for _, y := range nodes {
			if x != y {
				x.TrustDevice(y.PublicKey())
			}
		}
		require.NoError(t, x.Start(ctx))
	}
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Connect(ctx, c.Addr(), c.DeviceID()))
	require.NoError(t, b.Connect(ctx, c.Addr(), c.DeviceID()))
	require.Eventually(t, func() bool { return len(a.Peers()) == 2 && len(b.Peers()) == 2 && len(c.Peers()) == 2 }, 5*time.Second, time.Millisecond)
	require.NoError(t, a.Put(ctx, "notes", "linked", []byte("1")))
	waitValue(t, c, "notes", "linked", "1")

	rec.mu.Lock()
	ac := rec.dials[c.DeviceID()]
	rec.mu.Unlock()
	require.NoError(t, ac.Close(nil))
	require.Eventually(t, func() bool { return len(c.Peers()) == 1 && len(a.Peers()) == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
		for i := range 100 {
			if err := tx.Put("notes", fmt.Sprintf("after-%03d", i), []byte("a")); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, c.Put(ctx, "notes", "from-c", []byte("c")))
	waitValue(t, c, "notes", "after-099", "a")
	waitValue(t, a, "notes", "from-c", "c")
	require.Eventually(t, func() bool { return a.Root("notes") == c.Root("notes") }, 5*time.Second, time.Millisecond)
}
