package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
	"github.com/devicemesh/federation/store/memstore"
)

// The scripted tests run sessions without a node, a store file or a
// socket: memReplica is the in-memory store (store/memstore) behind a tiny
// replica, and pipeLink joins two sessions with in-memory streams.

// errReplicaGap is memReplica's refusal of a transaction that does not
// follow on from what it holds.
var errReplicaGap = errors.New("replica: gap")

// dot names one change.
type dot struct {
	origin core.DeviceID
	seq    uint64
}

// memReplica implements Replica over a memstore.Store, merging records by
// last writer (timestamp, then origin). It counts what it applies.
type memReplica struct {
	self core.DeviceID
	st   *memstore.Store

	mu      sync.Mutex // the write lock: commits and trees
	trees   map[string]*merkle.Tree
	changed chan struct{}
	seq     uint64
	ts      int64
	applied map[dot]int // changes applied by ApplyRemote, and how often
	records int         // record versions installed by ApplyRecords
	order   []string    // collection/key of every record version installed, in order
	bad     []string    // transactions of a shape the session must never pass

	reads atomic.Int64 // changelog reads (Changes calls)
}

func newReplica(self core.DeviceID) *memReplica {
	return &memReplica{self: self, st: memstore.New(), trees: map[string]*merkle.Tree{},
		changed: make(chan struct{}), applied: map[dot]int{}}
}

func (r *memReplica) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// commitLocked commits b and folds its records into the trees.
func (r *memReplica) commitLocked(ctx context.Context, b core.Batch) error {
	if err := r.st.Commit(ctx, b); err != nil {
		return err
	}
	for _, rec := range b.Records {
		r.order = append(r.order, rec.Collection+"/"+rec.Key)
		t := r.trees[rec.Collection]
		if t == nil {
			t = merkle.New()
			r.trees[rec.Collection] = t
		}
		t.Set(rec.Key, merkle.RecordDigest(rec))
	}
	r.notifyLocked()
	return nil
}

// write commits one local transaction of n changes to coll, keys
// prefix0..prefix(n-1), each value size bytes.
func (r *memReplica) write(t testing.TB, coll, prefix string, n, size int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx := context.Background()
	vv, _ := r.st.VersionVector(ctx)
	first := r.seq + 1
	var b core.Batch
	for i := range n {
		r.seq++
		r.ts++
		cv := vv.Clone()
		cv[r.self] = r.seq
		rec := core.Record{Collection: coll, Key: fmt.Sprintf("%s%d", prefix, i), Value: make([]byte, size),
			Timestamp: core.MakeTimestamp(1_700_000_000_000+r.ts, 0), Origin: r.self, Seq: r.seq, Context: cv}
		copy(rec.Value, fmt.Sprintf("%s/%d", r.self.Short(), r.seq))
		b.Changes = append(b.Changes, core.Change{Record: rec, TxnFirst: first, TxnLen: uint32(n)})
		b.Records = append(b.Records, rec)
	}
	if err := r.commitLocked(ctx, b); err != nil {
		t.Fatal(err)
	}
}

// newer reports whether a wins over b by last writer.
func newer(a, b core.Record) bool {
	if a.Timestamp != b.Timestamp {
		return a.Timestamp > b.Timestamp
	}
	return a.Origin.Compare(b.Origin) > 0
}

// mergeLocked returns the records of in that win over what is stored.
func (r *memReplica) mergeLocked(ctx context.Context, in []core.Change) ([]core.Record, error) {
	var out []core.Record
	for _, c := range in {
		cur, err := r.st.Get(ctx, c.Collection, c.Key)
		switch {
		case errors.Is(err, core.ErrNotFound):
		case err != nil:
			return nil, err
		case !newer(c.Record, cur):
			continue
		}
		out = append(out, c.Record)
	}
	return out, nil
}

func (r *memReplica) VersionVector(ctx context.Context) (core.VersionVector, error) {
	return r.st.VersionVector(ctx)
}

func (r *memReplica) Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	r.reads.Add(1)
	return r.st.Changes(ctx, origin, after, limit, fn)
}

func (r *memReplica) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *memReplica) OriginDevice(origin core.DeviceID) core.DeviceID { return origin }

func (r *memReplica) ApplyRemote(ctx context.Context, txns [][]core.Change) (Applied, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var res Applied
	held, err := r.st.VersionVector(ctx)
	if err != nil {
		return res, err
	}
	var b core.Batch
	var dots []dot
	for _, t := range txns {
		if err := wholeTxn(t); err != nil {
			r.bad = append(r.bad, err.Error())
			return res, fmt.Errorf("%w: %w", core.ErrProtocol, err)
		}
		for _, c := range t {
			if err := c.Validate(); err != nil || c.Origin.IsZero() || c.Seq == 0 {
				return res, fmt.Errorf("%w: change %d: %v", core.ErrProtocol, c.Seq, err)
			}
		}
		o, first := t[0].Origin, t[0].TxnFirst
		if end := first + uint64(len(t)) - 1; end <= held[o] {
			continue // held already: a replay changes nothing
		}
		if first != held[o]+1 {
			return res, fmt.Errorf("%w: %s starts at %d, have %d", errReplicaGap, o.Short(), first, held[o])
		}
		recs, err := r.mergeLocked(ctx, t)
		if err != nil {
			return res, err
		}
		b.Changes = append(b.Changes, t...)
		b.Records = append(b.Records, recs...)
		held[o] = first + uint64(len(t)) - 1
		for _, c := range t {
			dots = append(dots, dot{c.Origin, c.Seq})
		}
		res.Txns++
		res.Changes += len(t)
	}
	if len(b.Changes) == 0 {
		return res, nil
	}
	if err := r.commitLocked(ctx, b); err != nil {
		return Applied{}, err
	}
	for _, d := range dots {
		r.applied[d]++
	}
	return res, nil
}

func (r *memReplica) ApplyRecords(ctx context.Context, recs []core.Change) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range recs {
		if err := c.Validate(); err != nil || c.Origin.IsZero() || c.Seq == 0 {
			return fmt.Errorf("%w: record %q: %v", core.ErrProtocol, c.Key, err)
		}
	}
	out, err := r.mergeLocked(ctx, recs)
	if err != nil || len(out) == 0 {
		return err
	}
	if err := r.commitLocked(ctx, core.Batch{Records: out}); err != nil {
		return err
	}
	r.records += len(out)
	return nil
}

func (r *memReplica) Advance(ctx context.Context, vv core.VersionVector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.st.Commit(ctx, core.Batch{Advance: vv}); err != nil {
		return err
	}
	r.notifyLocked()
	return nil
}

func (r *memReplica) Roots() map[string][32]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rootsLocked()
}

func (r *memReplica) rootsLocked() map[string][32]byte {
	out := map[string][32]byte{}
	for c, t := range r.trees {
		if t.Len() > 0 {
			out[c] = t.Root()
		}
	}
	return out
}

func (r *memReplica) Snapshot(ctx context.Context) (core.VersionVector, map[string][32]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vv, err := r.st.VersionVector(ctx)
	return vv, r.rootsLocked(), err
}

func (r *memReplica) RepairBase(ctx context.Context) (core.VersionVector, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.VersionVector(ctx)
}

func (r *memReplica) Reconciler(coll string, cfg merkle.Config) Reconciler {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trees[coll]
	if t == nil {
		t = merkle.New()
		r.trees[coll] = t
	}
	return &lockedReconciler{mu: &r.mu, tree: t, cfg: cfg}
}

type lockedReconciler struct {
	mu   *sync.Mutex
	tree *merkle.Tree
	cfg  merkle.Config
	rec  *merkle.Reconciler
}

func (l *lockedReconciler) Start() *merkle.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec = merkle.NewReconciler(l.tree, l.cfg)
	return l.rec.Start()
}

func (l *lockedReconciler) Next(resp *merkle.Response) (*merkle.Request, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Next(resp)
}

func (l *lockedReconciler) Diff() merkle.Diff { return l.rec.Diff() }

func (r *memReplica) AnswerMerkle(coll string, req *merkle.Request) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trees[coll]
	if t == nil {
		t = merkle.New()
	}
	resp, err := t.Respond(req)
	if err != nil {
		return nil, err
	}
	return resp.AppendBinary(nil, req)
}

func (r *memReplica) Get(ctx context.Context, coll, key string) (core.Record, error) {
	return r.st.Get(ctx, coll, key)
}

// state returns the version vector and the roots.
func (r *memReplica) state() (core.VersionVector, map[string][32]byte) {
	vv, roots, _ := r.Snapshot(context.Background())
	return vv, roots
}

// twice returns the changes applied more than once.
func (r *memReplica) twice() []dot {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []dot
	for d, n := range r.applied {
		if n > 1 {
			out = append(out, d)
		}
	}
	return out
}

func (r *memReplica) appliedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.applied)
}

// links is a Session's Links in a two-device test: no other sessions.
type links struct{}

func (links) Hello(vv core.VersionVector) wire.SyncHello {
	return wire.SyncHello{VV: vv, Instance: 1}
}
func (links) OnHello(context.Context, wire.SyncHello) {}
func (links) Direct() core.VersionVector              { return core.VersionVector{} }

// bufPipe is one direction of a pipeLink: a byte pipe with a bounded
// buffer, as a transport's stream has a flow-control window. Writes block
// while the buffer is full, reads while it is empty; closing it ends both.
type bufPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	limit  int
	closed bool
	eof    bool // the writer is done: reads drain the buffer, then EOF
}

func newBufPipe(limit int) *bufPipe {
	p := &bufPipe{limit: limit}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed && !p.eof {
		p.cond.Wait()
	}
	if p.closed {
		return 0, net.ErrClosed
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.cond.Broadcast()
	return n, nil
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	written := 0
	for len(b) > 0 {
		for len(p.buf) >= p.limit && !p.closed {
			p.cond.Wait()
		}
		if p.closed || p.eof {
			return written, net.ErrClosed
		}
		n := min(len(b), p.limit-len(p.buf))
		p.buf = append(p.buf, b[:n]...)
		b, written = b[n:], written+n
		p.cond.Broadcast()
	}
	return written, nil
}

func (p *bufPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

func (p *bufPipe) CloseWrite() error {
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// pipeLink is an in-memory connection between two sessions: one bufPipe
// per direction. Closing either side ends both.
type pipeLink struct {
	ab, ba *bufPipe // a writes ab, b reads it; b writes ba, a reads it
	done   chan struct{}
	once   sync.Once
}

// window is a pipe's buffer: a stream's flow-control window.
const window = 256 << 10

func newLink() *pipeLink {
	return &pipeLink{ab: newBufPipe(window), ba: newBufPipe(window), done: make(chan struct{})}
}

func (l *pipeLink) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.ab.Close()
		_ = l.ba.Close()
	})
}

// end is one side of a pipeLink as a core.Session.
type end struct {
	l       *pipeLink
	peer    core.DeviceID
	out, in core.Stream
}

// sides returns the link's two ends: a's peer is b and b's peer is a.
func (l *pipeLink) sides(a, b core.DeviceID) (*end, *end) {
	return &end{l: l, peer: b, out: l.ab, in: l.ba},
		&end{l: l, peer: a, out: l.ba, in: l.ab}
}

func (e *end) Peer() core.DeviceID     { return e.peer }
func (e *end) PeerKey() core.PublicKey { return core.PublicKey{} }
func (e *end) OpenStream(context.Context) (core.Stream, error) {
	return e.out, nil
}
func (e *end) AcceptStream(ctx context.Context) (core.Stream, error) {
	select {
	case <-e.l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
		return e.in, nil
	}
}
func (e *end) Close(error) error     { e.l.close(); return nil }
func (e *end) Done() <-chan struct{} { return e.l.done }

// testConfig is a session config over r for tests: short timeouts on the
// real clock unless sched is set.
func testConfig(r *memReplica, sched core.Scheduler) Config {
	return Config{Self: r.self, Replica: r, Scheduler: sched, Limits: Limits{SyncTimeout: 5 * time.Second}}
}

// running is a Session started by start.
type running struct {
	s    *Session
	errc chan error
}

// start runs a session for r on e until ctx ends.
func start(ctx context.Context, cfg Config, e core.Session) *running {
	s := New(cfg, e, links{})
	rn := &running{s: s, errc: make(chan error, 1)}
	go func() { rn.errc <- s.Run(ctx) }()
	return rn
}

// wait returns the session's result, failing the test if it takes longer
// than d.
func (rn *running) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case err := <-rn.errc:
		return err
	case <-time.After(d):
		t.Fatalf("session still running after %v", d)
		return nil
	}
}

// converge waits until a and b hold the same version vector and roots.
func converge(t testing.TB, a, b *memReplica, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		va, ra := a.state()
		vb, rb := b.state()
		if va.Compare(vb) == core.Equal && rootsKey(ra, rb) == ([32]byte{}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence within %v: %v / %v", d, va, vb)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
