package anchor_test

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/replica"
)

// fakeReplica is the commit pipeline as the anchor sees it: a map of
// records behind a write lock.
type fakeReplica struct {
	lock  sync.Mutex // the write lock
	mu    sync.Mutex // guards recs
	recs  map[string]core.Record
	locks atomic.Int64 // Exclusive calls that ran
}

func newFakeReplica() *fakeReplica { return &fakeReplica{recs: map[string]core.Record{}} }

func (r *fakeReplica) Get(_ context.Context, collection, key string) (core.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[collection+"/"+key]
	if !ok {
		return core.Record{}, core.ErrNotFound
	}
	return rec, nil
}

func (r *fakeReplica) Exclusive(_ context.Context, _ string, fn func() error) error {
	r.lock.Lock()
	defer r.lock.Unlock()
	defer r.locks.Add(1)
	return fn()
}

func (r *fakeReplica) CommitLocked(_ context.Context, ops []replica.Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range ops {
		r.recs[op.Collection+"/"+op.Key] = core.Record{Collection: op.Collection, Key: op.Key, Value: op.Value, Deleted: op.Deleted}
	}
	return nil
}

func (r *fakeReplica) Current() core.DeviceID                     { return core.DeviceID{9} }
func (r *fakeReplica) OriginDevice(o core.DeviceID) core.DeviceID { return o }

// fakeEvents collects tamper reports.
type fakeEvents struct {
	mu      sync.Mutex
	origins []core.DeviceID
}

func (e *fakeEvents) Tampered(origin core.DeviceID, _ string) {
	e.mu.Lock()
	e.origins = append(e.origins, origin)
	e.mu.Unlock()
}

func (e *fakeEvents) reported() []core.DeviceID {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]core.DeviceID(nil), e.origins...)
}

// device is one open of a device: its log, replica, events and anchor.
type device struct {
	ident  *identity.Identity
	mem    *audit.Memory
	rep    *fakeReplica
	events *fakeEvents
	a      *anchor.Anchor
}

func open(t *testing.T, ident *identity.Identity, mem *audit.Memory, rep *fakeReplica, clock core.Clock) *device {
	t.Helper()
	d := &device{ident: ident, mem: mem, rep: rep, events: &fakeEvents{}}
	d.a = anchor.New(anchor.Config{
		Log: audit.New(mem, audit.Options{Clock: clock}), Replica: rep, Identity: ident,
		Events: d.events, Clock: clock,
	})
	return d
}

func (d *device) record(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		d.a.Record(context.Background(), audit.Entry{Kind: audit.KindBatchSent, Device: core.DeviceID{1}, Detail: audit.Detail{audit.Num("changes", int64(i))}})
	}
}

func (d *device) headRecord(t *testing.T) core.Record {
	t.Helper()
	self := d.ident.DeviceID()
	r, err := d.rep.Get(context.Background(), anchor.Collection, hex.EncodeToString(self[:]))
	if err != nil {
		t.Fatalf("no head of the device committed: %v", err)
	}
	return r
}

// forge is the attacker with write access to the device's file: it edits
// row edit (0: none), recomputes every later hash, and keeps the first
// keep rows, so that the forged chain verifies on its own.
func forge(t *testing.T, mem *audit.Memory, edit uint64, keep int) *audit.Memory {
	t.Helper()
	ctx := context.Background()
	var es []audit.Entry
	if err := mem.Scan(ctx, func(e audit.Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	es = es[:keep]
	if edit > 0 {
		es[edit-1].Kind = audit.KindRefusal
		es[edit-1].Detail = audit.Detail{audit.Text("reason", "nothing-happened")}
		for i := int(edit - 1); i < len(es); i++ {
			if i > 0 {
				es[i].PrevHash = es[i-1].Hash
			}
			es[i].Hash = es[i].ComputeHash()
		}
	}
	out := audit.NewMemory()
	for _, e := range es {
		if err := out.Insert(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := audit.New(out, audit.Options{}).Verify(ctx); err != nil {
		t.Fatalf("forged chain does not verify on its own: %v", err)
	}
	return out
}

// TestHistoryCheckedAgainstPeerHead: a device signs its audit head; its
// history is then rewritten (a row edited and every later hash
// recomputed) or truncated, and its own stored head deleted, so that the
// chain verifies on its own. When the head its peer holds comes back
// (CheckHeads, as the commit pipeline runs it), the device reports
// ErrTampered through Events and Verify, counts it, and signs no head over
// the forged history. An intact history is not flagged. No Node, store
// file or socket.
func TestHistoryCheckedAgainstPeerHead(t *testing.T) {
	for _, c := range []struct {
		name     string
		edit     uint64
		keep     int
		tampered bool
	}{{"intact", 0, 40, false}, {"rewritten", 5, 40, true}, {"truncated", 0, 25, true}, {"rewritten-and-truncated", 3, 30, true}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			clock := core.NewManualClock(time.Unix(1_700_000_000, 0))
			ident, err := identity.Generate(nil)
			if err != nil {
				t.Fatal(err)
			}
			peer := core.DeviceID{7}
			first := open(t, ident, audit.NewMemory(), newFakeReplica(), clock)
			first.a.Open(ctx)
			first.record(t, 40)
			if err := first.rep.Exclusive(ctx, "", func() error { return first.a.PublishHeadLocked(ctx) }); err != nil {
				t.Fatal(err)
			}
			held := first.headRecord(t) // what the peer holds
			if h, _ := first.a.Held(ctx, ident.DeviceID()); h.Head.Seq != 40 {
				t.Fatalf("signed head covers %d entries, want 40", h.Head.Seq)
			}

			// The device's file after the attack: a forged chain, and no own
			// head (the attacker deleted it).
			clock.Advance(time.Hour)
			again := open(t, ident, forge(t, first.mem, c.edit, c.keep), newFakeReplica(), clock)
			again.a.Open(ctx)
			if err := again.a.Verify(ctx); err != nil {
				t.Fatalf("nothing to check against before the peer's head arrives, got %v", err)
			}
			// The peer's head arrives through the pipeline: checked, then
			// committed.
			held.Origin = peer
			err = again.rep.Exclusive(ctx, "", func() error {
				if err := again.a.CheckHeads(ctx, peer, []core.Record{held}); err != nil {
					return err
				}
				return again.rep.CommitLocked(ctx, []replica.Op{{Collection: held.Collection, Key: held.Key, Value: held.Value}})
			})
			if err != nil {
				t.Fatalf("a validly signed head refused: %v", err)
			}
			if !c.tampered {
				verr := again.a.Verify(ctx)
				if verr != nil || again.a.Detected() != 0 || len(again.events.reported()) != 0 {
					t.Fatalf("intact history flagged: %v, %d detections, events %v", verr, again.a.Detected(), again.events.reported())
				}
				return
			}
			// Detected on arrival, before anything calls Verify.
			if got := again.events.reported(); len(got) != 1 || got[0] != ident.DeviceID() {
				t.Fatalf("tamper reports %v, want one for the device", got)
			}
			if again.a.Detected() != 1 {
				t.Fatalf("detections = %d, want 1", again.a.Detected())
			}
			if verr := again.a.Verify(ctx); !errors.Is(verr, anchor.ErrTampered) || !errors.Is(verr, audit.ErrTampered) {
				t.Fatalf("Verify = %v, want ErrTampered", verr)
			}
			// It signs no head over the forged history.
			again.record(t, 60)
			if err := again.rep.Exclusive(ctx, "", func() error { return again.a.PublishHeadLocked(ctx) }); err != nil {
				t.Fatal(err)
			}
			if got := again.headRecord(t); string(got.Value) != string(held.Value) {
				t.Fatal("a head was signed over the rewritten history")
			}
		})
	}
}

// TestPeerForkReported: a peer holding a device's head that receives a
// higher head of it not extending the one held reports a fork for that
// device (Events, Detected, an audited refusal); a forged head is refused.
func TestPeerForkReported(t *testing.T) {
	ctx := context.Background()
	dev, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	peerIdent, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := open(t, peerIdent, audit.NewMemory(), newFakeReplica(), nil)
	id := dev.DeviceID()
	key := hex.EncodeToString(id[:])
	held := audit.SignedHead{Key: dev.PublicKey(), Head: audit.Head{Seq: 10, Hash: audit.Hash{1}}, At: time.Now()}
	held.Sign(dev.Sign)
	if err := peer.rep.CommitLocked(ctx, []replica.Op{{Collection: anchor.Collection, Key: key, Value: held.Marshal()}}); err != nil {
		t.Fatal(err)
	}
	forged := audit.SignedHead{Key: dev.PublicKey(), Head: audit.Head{Seq: 30}, At: time.Now()}
	forged.Sign(peerIdent.Sign) // claims dev's key
	err = peer.a.CheckHeads(ctx, id, []core.Record{{Collection: anchor.Collection, Key: key, Value: forged.Marshal()}})
	if !errors.Is(err, anchor.ErrForgedHead) || !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("forged head: %v, want ErrForgedHead", err)
	}
	fork := audit.SignedHead{Key: dev.PublicKey(), Head: audit.Head{Seq: 20, Hash: audit.Hash{3}}, Prev: audit.Head{Seq: 10, Hash: audit.Hash{2}}, At: time.Now()}
	fork.Sign(dev.Sign)
	if err := peer.a.CheckHeads(ctx, id, []core.Record{{Collection: anchor.Collection, Key: key, Value: fork.Marshal()}}); err != nil {
		t.Fatalf("a validly signed head refused: %v", err)
	}
	if got := peer.events.reported(); len(got) != 1 || got[0] != id || peer.a.Detected() != 1 {
		t.Fatalf("fork reports %v, %d detections; want one for the device", got, peer.a.Detected())
	}
	es, err := peer.a.Log().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRefusal}})
	if err != nil || len(es) != 2 {
		t.Fatalf("refusals audited: %d, %v; want the forged head and the fork", len(es), err)
	}
	for i, want := range []string{"forged-audit-head", "audit-head-fork"} {
		if r, _ := es[i].Detail.Get("reason"); r.Text != want {
			t.Fatalf("refusal %d: %q, want %q", i, r.Text, want)
		}
	}
}

// TestHeadPublishedOnClockTick: the head loop runs on Config.Clock's
// timers. A few entries (fewer than HeadEvery) get no head at the first
// tick, and get one at the tick after HeadInterval has passed on a
// core.ManualClock; real time plays no part.
func TestHeadPublishedOnClockTick(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := core.NewManualClock(time.Unix(1_700_000_000, 0))
	ident, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := open(t, ident, audit.NewMemory(), newFakeReplica(), clock)
	held := d.a.Open(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.a.Run(ctx, held)
	}()
	defer func() {
		cancel()
		<-done
	}()
	d.record(t, 5)
	self := ident.DeviceID()
	tick := func(by time.Duration) {
		t.Helper()
		waitFor(t, "the loop to arm its timer", func() bool { return clock.Pending() == 1 })
		before := d.rep.locks.Load()
		clock.Advance(by)
		waitFor(t, "the loop to run at the tick", func() bool { return d.rep.locks.Load() > before })
	}
	tick(anchor.HeadTick)
	if h, ok := d.a.Held(ctx, self); ok {
		t.Fatalf("head %d published before HeadInterval", h.Head.Seq)
	}
	tick(anchor.HeadInterval)
	h, ok := d.a.Held(ctx, self)
	if !ok || h.Head.Seq != 5 {
		t.Fatalf("no head of the 5 entries after HeadInterval (held %v, %d entries)", ok, h.Head.Seq)
	}
	if !h.At.Equal(clock.Now()) {
		t.Fatalf("head signed at %v, want the clock's %v", h.At, clock.Now())
	}
}

// waitFor polls cond for up to 10 s (the loop runs on its own goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
