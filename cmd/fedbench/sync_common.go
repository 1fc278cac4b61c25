package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/transport"
)

// Shared pieces of the sync scenarios (initial-sync, delta, insync, repair):
// nodes on libSQL files whose store and sessions the benchmark can reach,
// the benchmark's records, and waiting for two nodes to converge.

// syncColl is the collection every sync scenario writes.
const syncColl = "bench"

// logEnv, when set, sends the nodes' logs to stderr.
const logEnv = "FEDBENCH_LOG"

// syncTxn is the number of records per transaction when a node is filled.
const syncTxn = 1000

// benchNode is a started Node on a libSQL file, with a handle on its store
// (to truncate the changelog) and on its sessions (to disconnect).
type benchNode struct {
	dir   string
	node  *federation.Node
	store *libsqlstore.Store
	tr    *trackingTransport
}

// openBenchNode opens (creating when missing) a node in dir and starts it
// on QUIC on loopback; key, when set, encrypts its store.
func openBenchNode(ctx context.Context, dir string, key []byte) (*benchNode, error) {
	st, err := libsqlstore.Open(ctx, filepath.Join(dir, federation.DBFile), libsqlstore.Options{Key: key})
	if err != nil {
		return nil, err
	}
	bn := &benchNode{dir: dir, store: st}
	var logger *slog.Logger
	if os.Getenv(logEnv) != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	node, err := federation.New(federation.Config{
		Dir:    dir,
		Store:  st,
		Logger: logger,
		Network: federation.NetworkConfig{
			ListenAddr: "127.0.0.1:0",
			Transport:  bn.quic,
		},
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	bn.node = node
	if err := node.Start(ctx); err != nil {
		_ = node.Close()
		return nil, err
	}
	return bn, nil
}

// quic builds the default QUIC transport, wrapped so sessions can be cut.
func (bn *benchNode) quic(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
	q, err := transport.NewQUIC(ctx, transport.QUICConfig{
		Identity:   p.Identity,
		Authorizer: p.Authorizer,
		Keys:       p.Keys,
		ListenAddr: "127.0.0.1:0",
		Logger:     p.Logger,
	})
	if err != nil {
		return nil, err
	}
	bn.tr = &trackingTransport{Transport: q}
	return bn.tr, nil
}

func (bn *benchNode) close() error { return bn.node.Close() }

// trackingTransport remembers its sessions so the benchmark can disconnect
// two nodes without revoking trust or restarting them. While offline, it
// refuses to dial and closes what it accepts: the node's redial loop would
// otherwise bring a disconnected pair back before the next measurement
// (which starts with the benchmark's own Connect).
type trackingTransport struct {
	core.Transport
	mu       sync.Mutex
	sessions []core.Session
	offline  atomic.Bool
}

// errOffline is what a node's redial gets from a transport taken offline.
var errOffline = errors.New("fedbench: transport offline between measurements")

func (t *trackingTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	if t.offline.Load() {
		return nil, errOffline
	}
	s, err := t.Transport.Dial(ctx, addr, peer)
	if err == nil {
		t.add(s)
	}
	return s, err
}

func (t *trackingTransport) Accept(ctx context.Context) (core.Session, error) {
	for {
		s, err := t.Transport.Accept(ctx)
		if err == nil && t.offline.Load() {
			_ = s.Close(errOffline)
			continue
		}
		if err == nil {
			t.add(s)
		}
		return s, err
	}
}

func (t *trackingTransport) add(s core.Session) {
	t.mu.Lock()
	t.sessions = append(t.sessions, s)
	t.mu.Unlock()
}

// closeSessions closes every session made so far.
func (t *trackingTransport) closeSessions() {
	t.mu.Lock()
	ss := t.sessions
	t.sessions = nil
	t.mu.Unlock()
	for _, s := range ss {
		_ = s.Close(nil)
	}
}

// syncData returns key i and a 1 KiB-ish incompressible value: a window of
// one random buffer chosen by rng.
type syncData struct {
	pool     []byte
	valueLen int
}

func newSyncData(valueLen int, seed uint64) *syncData {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pool := make([]byte, valueLen+4096)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	return &syncData{pool: pool, valueLen: valueLen}
}

func syncKey(i int) string { return fmt.Sprintf("key-%09d", i) }

func (d *syncData) value(rng *rand.Rand) []byte {
	off := rng.IntN(4096)
	return d.pool[off : off+d.valueLen]
}

// fillNode writes records 0..n-1 to node, syncTxn per transaction, and
// prints progress under label.
func fillNode(ctx context.Context, label string, node *federation.Node, n, valueLen int) error {
	data := newSyncData(valueLen, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	start, last := time.Now(), time.Now()
	for i := 0; i < n; i += syncTxn {
		end := min(i+syncTxn, n)
		err := node.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < end; j++ {
				if err := tx.Put(syncColl, syncKey(j), data.value(rng)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: fill: %w", label, err)
		}
		if time.Since(last) > 5*time.Second || end == n {
			last = time.Now()
			el := time.Since(start).Seconds()
			progress("%s: fill: %d/%d records, %.0f records/s", label, end, n, float64(end)/el)
		}
	}
	return nil
}

// changeRecords overwrites d records spread evenly over 0..n-1 in one
// transaction, with values no device held before.
func changeRecords(ctx context.Context, node *federation.Node, n, d, valueLen int) error {
	seed := uint64(time.Now().UnixNano())
	data := newSyncData(valueLen, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	step := max(n/d, 1)
	return node.Update(ctx, func(tx *federation.Tx) error {
		for i := 0; i < d; i++ {
			if err := tx.Put(syncColl, syncKey((i*step)%n), data.value(rng)); err != nil {
				return err
			}
		}
		return nil
	})
}

// sameState reports whether b holds exactly what a holds: equal version
// vectors and equal Merkle roots.
func sameState(ctx context.Context, a, b *benchNode) (bool, error) {
	va, err := a.store.VersionVector(ctx)
	if err != nil {
		return false, err
	}
	vb, err := b.store.VersionVector(ctx)
	if err != nil {
		return false, err
	}
	if va.Compare(vb) != core.Equal {
		return false, nil
	}
	return rootsText(a.node.Roots()) == rootsText(b.node.Roots()), nil
}

// rootsText is a comparable text form of a node's roots.
func rootsText(roots map[string]federation.Digest) string {
	m := make(map[string]string, len(roots))
	for c, d := range roots {
		m[c] = hex.EncodeToString(d[:])
	}
	b, _ := json.Marshal(m) // map keys are sorted
	return string(b)
}

// vvText is a JSON form of a version vector (hex device id to sequence).
func vvText(vv core.VersionVector) map[string]uint64 {
	m := make(map[string]uint64, len(vv))
	for d, s := range vv {
		m[hex.EncodeToString(d[:])] = s
	}
	return m
}

// vvTotal is the number of changes a version vector covers.
func vvTotal(vv core.VersionVector) uint64 {
	var t uint64
	for _, s := range vv {
		t += s
	}
	return t
}

// trustEachOther makes a and b admit each other.
func trustEachOther(a, b *benchNode) {
	a.node.TrustDevice(b.node.PublicKey())
	b.node.TrustDevice(a.node.PublicKey())
}

// waitSame polls until b holds what a holds, printing progress under label
// every few seconds, and returns how long it took from start.
func waitSame(ctx context.Context, label string, a, b *benchNode, start time.Time, poll time.Duration, limit time.Duration) (time.Duration, error) {
	va, err := a.store.VersionVector(ctx)
	if err != nil {
		return 0, err
	}
	want := vvTotal(va)
	last := time.Now()
	for {
		ok, err := sameState(ctx, a, b)
		if err != nil {
			return 0, err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%s: not in sync after %v", label, limit)
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			vb, _ := b.store.VersionVector(ctx)
			progress("%s: receiver holds %d/%d changes after %.1fs", label, vvTotal(vb), want, time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// disconnect closes every session of a and b and waits until both nodes
// have dropped them.
func disconnect(ctx context.Context, a, b *benchNode) error {
	a.tr.offline.Store(true)
	b.tr.offline.Store(true)
	a.tr.closeSessions()
	b.tr.closeSessions()
	deadline := time.Now().Add(10 * time.Second)
	for len(a.node.Peers())+len(b.node.Peers()) > 0 {
		if time.Now().After(deadline) {
			return errors.New("sessions did not end")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// reconnect brings a pair that disconnect took offline back: b dials a.
func reconnect(ctx context.Context, a, b *benchNode) error {
	a.tr.offline.Store(false)
	b.tr.offline.Store(false)
	return b.node.Connect(ctx, a.node.Addr(), a.node.DeviceID())
}

// syncPair is two nodes that hold the same n records.
type syncPair struct {
	a, b *benchNode
	root string
	temp bool // root is removed by close
}

func (p *syncPair) close() {
	if p.a != nil {
		_ = p.a.close()
	}
	if p.b != nil {
		_ = p.b.close()
	}
	if p.temp {
		_ = os.RemoveAll(p.root)
	}
}

// pairMarker is the file that says a prepared pair is complete.
const pairMarker = "pair.json"

// preparePair returns two connected-then-disconnected nodes holding the same
// n records. With state set, the pair lives in state/pair-<n> and is reused
// by later runs (it is left on disk); otherwise it is built in a temporary
// directory that close removes. Building fills A, then syncs B from A.
func preparePair(ctx context.Context, label, state string, n, valueLen int) (*syncPair, error) {
	p := &syncPair{}
	if state == "" {
		dir, err := os.MkdirTemp("", "fedbench-pair-")
		if err != nil {
			return nil, err
		}
		p.root, p.temp = dir, true
	} else {
		p.root = filepath.Join(state, "pair-"+strconv.Itoa(n))
	}
	marker := filepath.Join(p.root, pairMarker)
	_, statErr := os.Stat(marker)
	reuse := statErr == nil
	if !reuse {
		_ = os.RemoveAll(p.root)
		if err := os.MkdirAll(p.root, 0o700); err != nil {
			return nil, err
		}
	}
	var err error
	if p.a, err = openBenchNode(ctx, filepath.Join(p.root, "a"), nil); err != nil {
		p.close()
		return nil, err
	}
	if !reuse {
		if err := fillNode(ctx, label+" A", p.a.node, n, valueLen); err != nil {
			p.close()
			return nil, err
		}
	}
	if p.b, err = openBenchNode(ctx, filepath.Join(p.root, "b"), nil); err != nil {
		p.close()
		return nil, err
	}
	trustEachOther(p.a, p.b)
	// Connect once, even for a reused pair, so the pair is surely in sync.
	start := time.Now()
	if err := reconnect(ctx, p.a, p.b); err != nil {
		p.close()
		return nil, err
	}
	took, err := waitSame(ctx, label+" prepare", p.a, p.b, start, 20*time.Millisecond, 2*time.Hour)
	if err != nil {
		p.close()
		return nil, err
	}
	if !reuse {
		progress("%s: B synced %d records in %.1fs (%.0f records/s)", label, n, took.Seconds(), float64(n)/took.Seconds())
	} else {
		progress("%s: reusing the prepared pair in %s", label, p.root)
	}
	if err := disconnect(ctx, p.a, p.b); err != nil {
		p.close()
		return nil, err
	}
	if !reuse {
		if err := os.WriteFile(marker, []byte(fmt.Sprintf(`{"n":%d,"value":%d}`, n, valueLen)), 0o600); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

// sumPeers adds up the status of every session of a node.
func sumPeers(ps []federation.PeerStatus) federation.PeerStatus {
	var t federation.PeerStatus
	for _, p := range ps {
		t.BytesSent += p.BytesSent
		t.BytesRecv += p.BytesRecv
		t.FramesSent += p.FramesSent
		t.FramesRecv += p.FramesRecv
		t.ChangesSent += p.ChangesSent
		t.ChangesRecv += p.ChangesRecv
		t.RecordsSent += p.RecordsSent
		t.RecordsRecv += p.RecordsRecv
		t.Repairs += p.Repairs
		t.Conflicts += p.Conflicts
	}
	return t
}
