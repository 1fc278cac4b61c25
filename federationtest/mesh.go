package federationtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// Options configures a Mesh.
type Options struct {
	// Seed drives every random choice of the mesh (faults). 0 means 1.
	Seed uint64
	// Faults are injected on every sync stream while enabled.
	Faults Faults
	// Config, when set, adjusts node i's configuration before it is built.
	Config func(i int, c *federation.Config)
	// LibSQL keeps each node's data in a libSQL file (in a directory of
	// the test's) instead of memory; Restart reopens the file.
	LibSQL bool
	// QUIC connects the nodes over real QUIC on loopback instead of the
	// in-memory network (partitions and faults still apply).
	QUIC bool
	// LogRing keeps the last LogRing lines the nodes log at Info and above
	// in memory, for Diagnose (0: none kept).
	LogRing int
}

// Faults are per-frame probabilities, each in [0, 1].
type Faults struct {
	Drop, Duplicate, Reorder float64
}

// Mesh is a set of nodes in one process that trust each other.
type Mesh struct {
	t      testing.TB
	opts   Options
	net    *transport.MemNetwork
	nodes  []*federation.Node
	stores []core.Store
	recs   []*Recorder
	dirs   []string
	addrs  map[string]int

	clockMu sync.Mutex
	frozen  time.Time       // zero: clocks run
	offsets []time.Duration // per node, added to its clock

	mu       sync.Mutex
	rng      *rand.Rand
	faultsOn bool
	injected FaultCounts
	group    []int              // partition group of each node; equal means connected
	links    map[*link]struct{} // live wrapped sessions
	ring     *logRing           // last log lines (Options.LogRing)
	ctx      context.Context    // lives until Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// keepOpen is a store that survives its node: Close is a no-op, so a node
// can be restarted on the same data, as with a file on disk. It records
// the node's local commits.
type keepOpen struct {
	*memstore.Store
	rec *Recorder
}

func (keepOpen) Close() error { return nil }

// Commit commits b and records its local changes.
func (s keepOpen) Commit(ctx context.Context, b core.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.rec.note(b)
	return nil
}

// fileStore is a libSQL store that records the node's local commits.
type fileStore struct {
	*libsqlstore.Store
	rec *Recorder
}

// Commit commits b and records its local changes.
func (s fileStore) Commit(ctx context.Context, b core.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.rec.note(b)
	return nil
}

// Recorder keeps every change a node committed as its own write (its
// origin is the node's device id or one of its replica incarnations, which
// the recorder learns from the _fed.replicas announcements it sees
// committed), across restarts and changelog compactions: the versions that
// its acknowledged writes created.
type Recorder struct {
	mu    sync.Mutex
	self  core.DeviceID
	mine  map[core.DeviceID]bool // replica ids announced for self
	local map[string]core.Record // by origin and sequence number
}

func (r *Recorder) note(b core.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.self.IsZero() {
		return
	}
	for _, c := range b.Changes {
		if c.Collection != "_fed.replicas" || len(c.Value) < 1+len(r.self) {
			continue
		}
		var dev core.DeviceID
		copy(dev[:], c.Value[1:])
		if dev != r.self {
			continue
		}
		if id, err := hex.DecodeString(c.Key); err == nil && len(id) == len(dev) {
			var rep core.DeviceID
			copy(rep[:], id)
			if r.mine == nil {
				r.mine = map[core.DeviceID]bool{}
			}
			r.mine[rep] = true
		}
	}
	for _, c := range b.Changes {
		if c.Origin == r.self || r.mine[c.Origin] {
			k := fmt.Sprintf("%x:%d", c.Origin[:], c.Seq)
			if _, dup := r.local[k]; !dup {
				r.local[k] = c.Record
			}
		}
	}
}

// Local returns the versions the node committed as its own writes.
func (r *Recorder) Local() []core.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]core.Record, 0, len(r.local))
	for _, rec := range r.local {
		out = append(out, rec)
	}
	return out
}

// Recorder returns node i's recorder of local commits.
func (m *Mesh) Recorder(i int) *Recorder { return m.recs[i] }

// meshClock is node i's clock: the system clock, or the mesh's frozen
// instant, plus the node's offset.
type meshClock struct {
	m *Mesh
	i int
}

func (c meshClock) Now() time.Time {
	c.m.clockMu.Lock()
	defer c.m.clockMu.Unlock()
	now := c.m.frozen
	if now.IsZero() {
		now = time.Now()
	}
	return now.Add(c.m.offsets[c.i])
}

// FreezeClocks stops every node's clock at the current instant (plus each
// node's offset) until ThawClocks: their writes then share one physical
// millisecond and differ only in their hybrid clocks' counters.
func (m *Mesh) FreezeClocks() {
	m.clockMu.Lock()
	m.frozen = time.Now()
	m.clockMu.Unlock()
}

// ThawClocks lets the clocks run again.
func (m *Mesh) ThawClocks() {
	m.clockMu.Lock()
	m.frozen = time.Time{}
	m.clockMu.Unlock()
}

// SetClockOffset sets how far node i's clock is off (negative: behind).
func (m *Mesh) SetClockOffset(i int, d time.Duration) {
	m.clockMu.Lock()
	m.offsets[i] = d
	m.clockMu.Unlock()
}

// NewMesh builds n started nodes that trust each other; they are not yet
// connected (see ConnectAll). The mesh is closed by t.Cleanup.
func NewMesh(t testing.TB, n int, opts Options) *Mesh {
	t.Helper()
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		t:      t,
		opts:   opts,
		net:    transport.NewMemNetwork(),
		addrs:  map[string]int{},
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		group:  make([]int, n),
		links:  map[*link]struct{}{},
		ctx:    ctx,
		cancel: cancel,
	}
	if opts.LogRing > 0 {
		m.ring = newLogRing(opts.LogRing)
	}
	m.nodes = make([]*federation.Node, n)
	m.stores = make([]core.Store, n)
	m.recs = make([]*Recorder, n)
	m.dirs = make([]string, n)
	m.offsets = make([]time.Duration, n)
	for i := range n {
		m.recs[i] = &Recorder{local: map[string]core.Record{}}
		if opts.LibSQL {
			m.dirs[i] = t.TempDir()
		} else {
			m.stores[i] = keepOpen{memstore.New(), m.recs[i]}
		}
		m.nodes[i] = m.build(i)
	}
	for i := range n {
		m.trustAll(i)
	}
	t.Cleanup(m.Close)
	return m
}

// build creates and starts node i on its store.
func (m *Mesh) build(i int) *federation.Node {
	if m.opts.LibSQL {
		st, err := libsqlstore.Open(context.Background(), filepath.Join(m.dirs[i], federation.DBFile), libsqlstore.Options{})
		if err != nil {
			m.t.Fatalf("federationtest: open node %d's file: %v", i, err)
		}
		m.mu.Lock()
		m.stores[i] = fileStore{st, m.recs[i]}
		m.mu.Unlock()
	}
	cfg := federation.Config{Store: m.Store(i), Device: federation.DeviceConfig{Name: fmt.Sprintf("node-%d", i), Type: "server"}}
	cfg.Clock = meshClock{m, i}
	// Faults can drop a request; a short timeout lets the session retry
	// well within WaitConverged's patience.
	cfg.SyncTimeout = time.Second
	switch {
	case os.Getenv("FED_DEBUG") != "":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case m.ring != nil:
		cfg.Logger = slog.New(newRingHandler(m.ring, fmt.Sprint(i), slog.LevelInfo))
	}
	cfg.Network.Transport = m.factory(i)
	if m.opts.Config != nil {
		m.opts.Config(i, &cfg)
	}
	cfg.Collections = wholeValues(cfg.Collections)
	n, err := federation.New(cfg)
	if err != nil {
		m.t.Fatalf("federationtest: node %d: %v", i, err)
	}
	m.recs[i].mu.Lock()
	m.recs[i].self = n.DeviceID()
	m.recs[i].mu.Unlock()
	if err := n.Start(m.ctx); err != nil {
		m.t.Fatalf("federationtest: start node %d: %v", i, err)
	}
	m.mu.Lock()
	m.addrs[n.Addr()] = i
	m.mu.Unlock()
	return n
}

// wholeValues returns the host policies set plus, for every default
// collection whose values stay behind (on-demand, summary) and that set
// does not name, its default policy made immediate: a Mesh checks that
// values converge, so its nodes hold them all unless a test's Config says
// otherwise (selective sync has tests of its own).
func wholeValues(set map[string]federation.Policy) map[string]federation.Policy {
	out := make(map[string]federation.Policy, len(set))
	for name, pol := range set {
		out[name] = pol
	}
	for name, pol := range federation.DefaultPolicies() {
		if _, ok := out[name]; ok || (pol.Mode != core.ModeOnDemand && pol.Mode != core.ModeSummary) {
			continue
		}
		pol.Mode = core.ModeImmediate
		out[name] = pol
	}
	return out
}

// trustAll makes node i trust every other node.
func (m *Mesh) trustAll(i int) {
	a := m.Node(i)
	for j := range m.nodes {
		if b := m.Node(j); j != i && b != nil {
			a.TrustDevice(b.PublicKey())
		}
	}
}

// Len returns the number of nodes.
func (m *Mesh) Len() int { return len(m.nodes) }

// Node returns node i (a new value after Restart).
func (m *Mesh) Node(i int) *federation.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[i]
}

// Store returns node i's store, which survives restarts (a libSQL store is
// reopened by Restart: call Store again after it).
func (m *Mesh) Store(i int) core.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stores[i]
}

// FaultCounts counts the faults a mesh injected.
type FaultCounts struct {
	Dropped, Duplicated, Reordered int
}

// Injected returns how many faults the mesh has injected so far.
func (m *Mesh) Injected() FaultCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.injected
}

// SetFaults turns fault injection on or off.
func (m *Mesh) SetFaults(on bool) {
	m.mu.Lock()
	m.faultsOn = on
	m.mu.Unlock()
}

// Partition splits the mesh: nodes in the same group stay connected, every
// session across groups is closed and no new one can be made until Heal.
// Nodes named in no group form one more group together.
func (m *Mesh) Partition(groups ...[]int) {
	m.mu.Lock()
	for i := range m.group {
		m.group[i] = 0
	}
	for g, members := range groups {
		for _, i := range members {
			m.group[i] = g + 1
		}
	}
	var cut []*link
	for l := range m.links {
		if m.group[l.a] != m.group[l.b] {
			cut = append(cut, l)
		}
	}
	m.mu.Unlock()
	for _, l := range cut {
		_ = l.Close(fmt.Errorf("federationtest: partitioned"))
	}
}

// Heal removes every partition.
func (m *Mesh) Heal() { m.Partition() }

func (m *Mesh) reachable(a, b int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.group[a] == m.group[b]
}

// Restart closes node i and builds it again on the same store, as after a
// crash or an app restart. Its sessions end; call ConnectAll to reconnect.
func (m *Mesh) Restart(i int) {
	old := m.Node(i)
	_ = old.Close()
	n := m.build(i)
	m.mu.Lock()
	m.nodes[i] = n
	m.mu.Unlock()
	m.trustAll(i)
}

// ConnectAll dials every pair of reachable nodes that has no live session.
// Dial failures (a partition, a node restarting) are ignored: the next call
// tries again.
func (m *Mesh) ConnectAll(ctx context.Context) {
	for i := range m.nodes {
		for j := i + 1; j < len(m.nodes); j++ {
			if !m.reachable(i, j) || m.connected(i, j) {
				continue
			}
			a, b := m.Node(i), m.Node(j)
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = a.Connect(dctx, b.Addr(), b.DeviceID())
			cancel()
		}
	}
}

// connected reports whether i has a live session with j.
func (m *Mesh) connected(i, j int) bool {
	peer := m.Node(j).DeviceID()
	for _, p := range m.Node(i).Peers() {
		if p.Device == peer {
			return true
		}
	}
	return false
}

// KeepConnected reconnects every reachable pair in the background every
// interval until the mesh closes or the returned stop function is called.
func (m *Mesh) KeepConnected(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(m.ctx)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m.ConnectAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return cancel
}

// Close closes every node. Idempotent.
func (m *Mesh) Close() {
	m.cancel()
	m.wg.Wait()
	for i := range m.nodes {
		_ = m.Node(i).Close()
	}
}
