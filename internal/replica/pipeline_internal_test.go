package replica

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
)

// recorder is an Observer that records every commit it sees and, in the
// work it hands off, whether the write lock was free and whether it could
// call back into the replica.
type recorder struct {
	n *Replica

	mu       sync.Mutex
	commits  []Commit
	lockFree []bool // per handed-off call: the write lock was free
}

func (o *recorder) Committed(c Commit) func() {
	o.mu.Lock()
	o.commits = append(o.commits, c)
	o.mu.Unlock()
	return func() {
		free := o.n.writeMu.TryLock()
		if free {
			o.n.writeMu.Unlock()
			// A handed-off task may call the replica (cutOff did, through
			// the sessions): it must not deadlock.
			if _, err := o.n.VersionVector(context.Background()); err != nil {
				panic(err)
			}
		}
		o.mu.Lock()
		o.lockFree = append(o.lockFree, free)
		o.mu.Unlock()
	}
}

func (o *recorder) sources() []Source {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Source, len(o.commits))
	for i, c := range o.commits {
		out[i] = c.Source
	}
	return out
}

// TestEveryEntryPointPassesTheHooksOnce: a local write, a remote
// transaction, a repair record and a repair's Advance all end in the same
// pipeline: each commit reaches every observer exactly once, in order,
// with its records; the work an observer hands off runs once per commit,
// after the write lock is released; the senders are woken and the events
// published each time.
func TestEveryEntryPointPassesTheHooksOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{})
	n := h.rep
	o1, o2 := &recorder{n: n}, &recorder{n: n}
	n.Observe(o1)
	n.Observe(o2)
	ts := core.MakeTimestamp(h.clock.Now().UnixMilli(), 0)

	steps := []struct {
		src Source
		run func() error
		key string // a record the commit must carry ("": none)
	}{
		{SourceLocal, func() error {
			return n.Update(ctx, "update", func(context.Context) ([]Op, error) {
				return []Op{{Collection: "notes", Key: "local", Value: []byte("l")}}, nil
			})
		}, "local"},
		{SourceRemote, func() error {
			_, err := n.ApplyRemote(ctx, []Txn{{change(peerA, 1, ts, "notes", "remote", "r", nil)}})
			return err
		}, "remote"},
		{SourceRepair, func() error {
			return n.ApplyRecords(ctx, []core.Change{change(peerB, 4, ts, "notes", "repaired", "p", nil)})
		}, "repaired"},
		{SourceAdvance, func() error {
			return n.Advance(ctx, core.VersionVector{peerB: 4})
		}, ""},
	}
	for i, s := range steps {
		wake := n.Changed()
		if err := s.run(); err != nil {
			t.Fatalf("%v: %v", s.src, err)
		}
		select {
		case <-wake:
		default:
			t.Fatalf("%v: senders not woken", s.src)
		}
		for _, o := range []*recorder{o1, o2} {
			if got := o.sources(); len(got) != i+1 || got[i] != s.src {
				t.Fatalf("after %v the observer saw %v", s.src, got)
			}
			if s.key != "" && !hasKey(o.commits[i].Records, s.key) {
				t.Fatalf("%v: commit without its record %q: %+v", s.src, s.key, o.commits[i].Records)
			}
			if len(o.lockFree) != i+1 || !o.lockFree[i] {
				t.Fatalf("%v: handed-off work ran %d times, lock free: %v", s.src, len(o.lockFree), o.lockFree)
			}
		}
	}
	if got := len(h.published(EventChange)); got != 3 {
		t.Fatalf("%d change events, want 3 (local, remote, repair)", got)
	}
	// A replayed transaction commits nothing: no observer call.
	if _, err := n.ApplyRemote(ctx, []Txn{{change(peerA, 1, ts, "notes", "remote", "r", nil)}}); err != nil {
		t.Fatal(err)
	}
	if got := o1.sources(); len(got) != 4 {
		t.Fatalf("a replay reached the observers: %v", got)
	}
	vv, _ := n.VersionVector(ctx)
	if vv[peerA] != 1 || vv[peerB] != 4 || vv[n.Current()] != 1 {
		t.Fatalf("version vector %v", vv)
	}
}

func hasKey(recs []core.Record, key string) bool {
	for _, r := range recs {
		if r.Key == key {
			return true
		}
	}
	return false
}

// TestHandedOffWorkRunsOutsideTheLockInExclusive: an observer's work for a
// commit made inside Exclusive (the audit anchor's path) also waits for the
// lock's release, and an error leaves nothing behind.
func TestHandedOffWorkRunsOutsideTheLockInExclusive(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{})
	n := h.rep
	o := &recorder{n: n}
	n.Observe(o)
	err := n.Exclusive(ctx, "", func() error {
		if err := n.CommitLocked(ctx, []Op{{Collection: "c", Key: "k", Value: []byte("v")}}); err != nil {
			return err
		}
		if len(o.lockFree) != 0 {
			t.Error("handed-off work ran under the lock")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.lockFree) != 1 || !o.lockFree[0] {
		t.Fatalf("handed-off work: %v", o.lockFree)
	}
}

// TestCommitLockedWithoutLockPanics: committing without the write lock is
// a programmer error, caught at once.
func TestCommitLockedWithoutLockPanics(t *testing.T) {
	h := newHarness(t, Config{})
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("no panic")
		}
	}()
	_ = h.rep.CommitLocked(context.Background(), []Op{{Collection: "c", Key: "k", Value: []byte("v")}})
}

// TestRepairMergesTwoVersionsOfOneKey: a repair batch carrying two
// concurrent versions of one key merges them, as a remote batch does,
// instead of committing both unmerged and keeping whichever the store
// wrote last (the repair copy of the pipeline read each key from the store
// alone, so the second version never saw the first). Both entry points end
// with the same record and root.
func TestRepairMergesTwoVersionsOfOneKey(t *testing.T) {
	ctx := context.Background()
	ts := core.MakeTimestamp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), 0)
	newer := change(peerA, 1, ts+10, "notes", "k", "newer", nil)
	older := change(peerB, 1, ts, "notes", "k", "older", nil)

	repair := newHarness(t, Config{})
	if err := repair.rep.ApplyRecords(ctx, []core.Change{newer, older}); err != nil {
		t.Fatal(err)
	}
	remote := newHarness(t, Config{})
	if _, err := remote.rep.ApplyRemote(ctx, []Txn{{newer}, {older}}); err != nil {
		t.Fatal(err)
	}
	got, err := repair.store.Get(ctx, "notes", "k")
	if err != nil {
		t.Fatal(err)
	}
	want, err := remote.store.Get(ctx, "notes", "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "newer" || string(want.Value) != "newer" {
		t.Fatalf("repair kept %q, remote %q; want the last writer's %q", got.Value, want.Value, "newer")
	}
	if got.Context.Compare(want.Context) != core.Equal || got.Context[peerA] != 1 || got.Context[peerB] != 1 {
		t.Fatalf("repair context %v, remote %v: want both versions covered", got.Context, want.Context)
	}
	if repair.rep.Root("notes") != remote.rep.Root("notes") {
		t.Fatal("the repair and the remote path disagree on the Merkle root")
	}
	var d merkle.Digest
	if repair.rep.Root("notes") == d {
		t.Fatal("empty root")
	}
}

// TestRepairSkipsLocalOnlyCollections: records of a collection that does
// not sync here are not merged by a repair.
func TestRepairSkipsLocalOnlyCollections(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{Policy: func(c string) core.Policy {
		if c == "private" {
			return core.Policy{Mode: core.ModeLocalOnly}
		}
		return core.Policy{Mode: core.ModeImmediate, Resolver: conflict.LWW{}}
	}})
	ts := core.MakeTimestamp(h.clock.Now().UnixMilli(), 0)
	if err := h.rep.ApplyRecords(ctx, []core.Change{change(peerA, 1, ts, "private", "k", "v", nil)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.Get(ctx, "private", "k"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("local-only record written by a repair: %v", err)
	}
}

// TestReentrantCallsRefused: calls that take the write lock with the
// transaction's context fail at once instead of deadlocking.
func TestReentrantCallsRefused(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Config{})
	n := h.rep
	err := n.Update(ctx, "update", func(tctx context.Context) ([]Op, error) {
		if _, err := n.Conflicts(tctx); !errors.Is(err, ErrReentrantWrite) {
			t.Errorf("Conflicts: %v", err)
		}
		if err := n.Exclusive(tctx, "stats", func() error { return nil }); !errors.Is(err, ErrReentrantWrite) {
			t.Errorf("Exclusive: %v", err)
		}
		if !n.InUpdate() {
			t.Error("InUpdate false inside the callback")
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.InUpdate() {
		t.Error("InUpdate true after the callback")
	}
}
