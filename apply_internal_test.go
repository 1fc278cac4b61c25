package federation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
)

// TestFarFutureRemoteRefused: a peer whose clock runs far ahead cannot drag
// this device's clock along: its transaction is refused whole and nothing
// of it is applied.
func TestFarFutureRemoteRefused(t *testing.T) {
	ctx := context.Background()
	n, err := New(Config{Store: memstore.New(), MaxClockDrift: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	peer := core.DeviceID{9}
	mk := func(ts time.Time, seq uint64, key string) remoteTxn {
		return remoteTxn{{Record: core.Record{Collection: "c", Key: key, Value: []byte("v"),
			Timestamp: core.MakeTimestamp(ts.UnixMilli(), 0), Origin: peer, Seq: seq,
			Context: core.VersionVector{peer: seq}}, TxnFirst: seq, TxnLen: 1}}
	}
	before := n.hlc.Last()
	_, err = n.applyRemote(ctx, []remoteTxn{mk(time.Now().Add(time.Hour), 1, "future")})
	if !errors.Is(err, core.ErrClockDrift) {
		t.Fatalf("far-future change: %v, want ErrClockDrift", err)
	}
	if _, err := n.Get(ctx, "c", "future"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("refused change visible: %v", err)
	}
	if n.hlc.Last() != before {
		t.Fatal("refused timestamp moved the clock")
	}
	// Within the bound it is applied, and a replay changes nothing.
	ok := mk(time.Now().Add(10*time.Second), 1, "soon")
	if _, err := n.applyRemote(ctx, []remoteTxn{ok}); err != nil {
		t.Fatal(err)
	}
	res, err := n.applyRemote(ctx, []remoteTxn{ok})
	if err != nil || res.changes != 0 || res.skipped != 1 {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	// A change that skips ahead of what is held is a gap, refused.
	if _, err := n.applyRemote(ctx, []remoteTxn{mk(time.Now(), 5, "gap")}); !errors.Is(err, ErrGap) {
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
