package federation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/store/memstore"
)

// TestFarFutureRemoteAcceptedClockBounded: a trusted peer whose clock runs
// far ahead cannot drag this device's clock along (it follows only up to
// MaxClockDrift ahead of the physical clock), but its transaction is
// accepted, never refused: a device with a wrong clock must still converge.
func TestFarFutureRemoteAcceptedClockBounded(t *testing.T) {
	ctx := context.Background()
	n, err := New(Config{Store: memstore.New(), MaxClockDrift: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	peer := core.DeviceID{9}
	mk := func(ts time.Time, seq uint64, key string) replica.Txn {
		return replica.Txn{{Record: core.Record{Collection: "c", Key: key, Value: []byte("v"),
			Timestamp: core.MakeTimestamp(ts.UnixMilli(), 0), Origin: peer, Seq: seq,
			Context: core.VersionVector{peer: seq}}, TxnFirst: seq, TxnLen: 1}}
	}
	sub := n.Subscribe(SubscribeOptions{})
	defer sub.Close()
	if _, err := n.c.Rep.ApplyRemote(ctx, []replica.Txn{mk(time.Now().Add(time.Hour), 1, "future")}); err != nil {
		t.Fatalf("far-future change from a trusted peer: %v", err)
	}
	if _, err := n.Get(ctx, "c", "future"); err != nil {
		t.Fatalf("accepted change not visible: %v", err)
	}
	if ahead := time.Until(n.c.HLC.Last().Time()); ahead > time.Minute+time.Second {
		t.Fatalf("clock followed the peer %s ahead, beyond the 1m bound", ahead)
	}
	if st, _ := n.Stats(ctx); st.ClockDrift != 1 {
		t.Fatalf("Stats.ClockDrift = %d, want 1", st.ClockDrift)
	}
	for e := range sub.C {
		if e.Kind == EventClockDrift {
			if e.Origin != peer || e.Reason == "" {
				t.Fatalf("drift event %+v", e)
			}
			break
		}
	}
	// Within the bound it is applied, and a replay changes nothing.
	ok := mk(time.Now().Add(10*time.Second), 2, "soon")
	if _, err := n.c.Rep.ApplyRemote(ctx, []replica.Txn{ok}); err != nil {
		t.Fatal(err)
	}
	res, err := n.c.Rep.ApplyRemote(ctx, []replica.Txn{ok})
	if err != nil || res.Changes != 0 || res.Skipped != 1 {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	// A change that skips ahead of what is held is a gap, refused.
	if _, err := n.c.Rep.ApplyRemote(ctx, []replica.Txn{mk(time.Now(), 5, "gap")}); !errors.Is(err, ErrGap) {
		t.Fatalf("gap: %v", err)
	}
	// Own writes after following the remote clock sort after it.
	if err := n.Put(ctx, "c", "mine", []byte("x")); err != nil {
		t.Fatal(err)
	}
	mine, _ := n.GetRecord(ctx, "c", "mine")
	soon, _ := n.GetRecord(ctx, "c", "soon")
	if mine.Timestamp <= soon.Timestamp {
		t.Fatalf("local write %v not after observed remote %v", mine.Timestamp, soon.Timestamp)
	}
}
