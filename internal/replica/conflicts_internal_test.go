package replica

import (
	"context"
	"testing"
	"time"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// TestConflictSettledInTheSameBatchIsNotQueued: a conflicting version and
// the resolution that covers it arriving in one batch (the other device
// raised the conflict and its user settled it before this device heard
// of either) leave nothing in the queue; it used to queue the conflict for
// good, since the resolution was checked against the queue before the
// conflict entered it.
func TestConflictSettledInTheSameBatchIsNotQueued(t *testing.T) {
	ctx := context.Background()
	res := conflict.NewRegistry()
	if err := res.Register("reminders", conflict.Manual{}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{Resolvers: res})
	ts := core.MakeTimestamp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), 0)
	wednesday := change(peerB, 1, ts, "reminders", "dentist", "Wednesday", nil)
	if _, err := h.rep.ApplyRemote(ctx, []Txn{{wednesday}}); err != nil {
		t.Fatal(err)
	}
	tuesday := change(peerA, 1, ts+1, "reminders", "dentist", "Tuesday", nil)
	chosen := change(peerA, 2, ts+2, "reminders", "dentist", "Tuesday (moved)", core.VersionVector{peerA: 1, peerB: 1})
	if _, err := h.rep.ApplyRemote(ctx, []Txn{{tuesday}, {chosen}}); err != nil {
		t.Fatal(err)
	}
	got, err := h.store.Get(ctx, "reminders", "dentist")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "Tuesday (moved)" {
		t.Fatalf("value %q, want the resolution", got.Value)
	}
	cs, err := h.rep.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Fatalf("queued %d conflicts settled in the same batch: %+v", len(cs), cs)
	}
	if n := len(h.published(EventConflict)); n != 0 {
		t.Fatalf("%d conflict events for a conflict settled in the same batch", n)
	}
}

// TestLocalWriteCoversAnEarlyVersion: a version installed ahead of the
// version vector (a Priority transaction, a repair's records) is covered
// by the context of a local write that replaces it. Without that, the
// user's resolution of a conflict that arrived early was itself
// concurrent with the version it replaced, and raised the conflict again
// on every device once the origin's stream caught up (found by
// examples/aico: both devices kept a conflict the user had resolved).
func TestLocalWriteCoversAnEarlyVersion(t *testing.T) {
	ctx := context.Background()
	res := conflict.NewRegistry()
	if err := res.Register("reminders", conflict.Manual{}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, Config{Resolvers: res})
	ts := core.MakeTimestamp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli(), 0)
	first := change(peerA, 1, ts, "notes", "n", "first", nil)
	if _, err := h.rep.ApplyRemote(ctx, []Txn{{first}}); err != nil {
		t.Fatal(err)
	}
	// This device wrote the reminder; A:2 waits in the stream; A:3, a
	// concurrent edit of high priority, arrives ahead of it and is queued
	// as a conflict (Manual), this device's version kept.
	err := h.rep.Update(ctx, "test", func(context.Context) ([]Op, error) {
		return []Op{{Collection: "reminders", Key: "dentist", Value: []byte("Monday")}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	second := change(peerA, 2, ts+1, "notes", "n", "second", core.VersionVector{peerA: 1})
	wednesday := change(peerA, 3, ts+2, "reminders", "dentist", "Wednesday", core.VersionVector{peerA: 2})
	if err := h.rep.ApplyRecords(ctx, []core.Change{wednesday}); err != nil {
		t.Fatal(err)
	}
	if cs, _ := h.rep.Conflicts(ctx); len(cs) != 1 {
		t.Fatalf("%d conflicts queued, want the early version's", len(cs))
	}
	// The user settles it here: the resolution replaces both versions.
	err = h.rep.Update(ctx, "test", func(context.Context) ([]Op, error) {
		return []Op{{Collection: "reminders", Key: "dentist", Value: []byte("Tuesday")}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.store.Get(ctx, "reminders", "dentist")
	if err != nil {
		t.Fatal(err)
	}
	if got.Context[peerA] < 3 {
		t.Fatalf("the local write's context %v does not cover the early version A:3", got.Context)
	}
	// The stream catches up: nothing is concurrent, nothing is queued.
	if _, err := h.rep.ApplyRemote(ctx, []Txn{{second}, {wednesday}}); err != nil {
		t.Fatal(err)
	}
	if got, _ = h.store.Get(ctx, "reminders", "dentist"); string(got.Value) != "Tuesday" {
		t.Fatalf("value %q after the stream caught up, want the local write", got.Value)
	}
	cs, err := h.rep.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Fatalf("queued %d conflicts: %+v", len(cs), cs)
	}
	if len(h.rep.early) != 0 {
		t.Fatalf("early contexts kept after the vector covers them: %v", h.rep.early)
	}
}
