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
