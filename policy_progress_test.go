package federation_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// TestProgressDuringLongInitialSync: a device with 40,000 records in two
// collections meets a new peer: while the initial sync runs, the sender
// raises EventSyncProgress per collection, a few times a second (not one
// per record), with records and bytes done climbing towards totals that
// match what was written, a rate, and Stats.Sync shows the same; the
// last report has done equal to total, and Stats.Sync is empty after.
//
// It runs on both stores: the libSQL one counts the census with one query
// per stretch of the changelog (core.ChangeCounter), the in-memory one
// without copying values, and both must give the totals that reading the
// changes gives.
func TestProgressDuringLongInitialSync(t *testing.T) {
	t.Run("memstore", func(t *testing.T) {
		testProgressDuringLongInitialSync(t, func(string) federation.Store { return memstore.New() })
	})
	t.Run("libsql", func(t *testing.T) {
		dir := t.TempDir()
		testProgressDuringLongInitialSync(t, func(name string) federation.Store {
			return openLibSQL(t, filepath.Join(dir, name+".db"))
		})
	})
}

func testProgressDuringLongInitialSync(t *testing.T, open func(name string) federation.Store) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	cfg := func(c *federation.Config) {
		c.Network.Transport = memFactory(net)
		c.Collections = map[string]federation.Policy{
			"bulk":  {Priority: federation.PriorityLow, Mode: federation.ModeImmediate},
			"notes": {Priority: federation.PriorityMedium, Mode: federation.ModeImmediate},
		}
	}
	// b applies slowly (a phone), so that the sync lasts several
	// progress periods on any machine: an episode shorter than one is
	// never reported.
	slow := slowCommits{Store: open("b"), delay: 20 * time.Millisecond}
	a, b := newNode(t, open("a"), cfg), newNode(t, slow, cfg)
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	want := map[string]uint64{"bulk": 36_000, "notes": 4_000}
	value := make([]byte, 200)
	for coll, n := range want {
		for i := uint64(0); i < n; i += 1000 {
			require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
				for j := i; j < i+1000; j++ {
					if err := tx.Put(coll, fmt.Sprintf("%06d", j), value); err != nil {
						return err
					}
				}
				return nil
			}))
		}
	}
	// Offline: b is trusted and not connected.
	st, err := a.Stats(ctx)
	require.NoError(t, err)
	require.Contains(t, offline(st), b.DeviceID())
	require.GreaterOrEqual(t, offline(st)[b.DeviceID()], want["bulk"]+want["notes"])

	sub := a.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	start := time.Now()
	var reports []federation.SyncProgress
	midSync := false
	done := func() bool {
		n := 0
		_ = b.Scan(ctx, "bulk", federation.KeyRange{}, func(federation.Record) error { n++; return nil })
		return uint64(n) == want["bulk"]
	}
	for !done() || !finished(reports, want) {
		select {
		case e := <-sub.C:
			if e.Kind == federation.EventSyncProgress {
				require.NotNil(t, e.Progress)
				require.Equal(t, b.DeviceID(), e.Origin)
				require.Equal(t, e.Collection, e.Progress.Collection)
				reports = append(reports, *e.Progress)
				if !midSync && e.Progress.RecordsDone < e.Progress.RecordsTotal {
					st, err := a.Stats(ctx)
					require.NoError(t, err)
					for _, p := range st.Sync.Progress {
						if p.Peer == b.DeviceID() && p.Collection == e.Collection && p.RecordsDone < p.RecordsTotal {
							midSync = true
						}
					}
				}
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("no final progress: %d reports, last %+v", len(reports), reports[len(reports)-1:])
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d reports in %v", len(reports), elapsed)
	require.True(t, midSync, "Stats.Sync showed the sync in progress")
	var during, rated int
	for _, r := range reports {
		require.LessOrEqual(t, r.RecordsDone, r.RecordsTotal)
		require.LessOrEqual(t, r.BytesDone, r.BytesTotal)
		if r.RecordsDone < r.RecordsTotal {
			during++
		}
		if r.Rate > 0 {
			rated++
		}
	}
	require.Positive(t, during, "progress reported while the sync ran")
	require.Positive(t, rated)
	// Rate-limited: a few reports per collection per quarter second, far
	// from one per record.
	require.Less(t, len(reports), 2*len(want)*(int(elapsed/(250*time.Millisecond))+2))
	require.Eventually(t, func() bool {
		st, err := a.Stats(ctx)
		require.NoError(t, err)
		return len(st.Sync.Progress) == 0
	}, 5*time.Second, 10*time.Millisecond, "nothing in progress once b holds everything")
}

// slowCommits is a store whose commits take at least delay longer. It
// unwraps to the store it wraps, so that store's capabilities stay.
type slowCommits struct {
	federation.Store
	delay time.Duration
}

func (s slowCommits) Commit(ctx context.Context, b core.Batch) error {
	time.Sleep(s.delay)
	return s.Store.Commit(ctx, b)
}

func (s slowCommits) Unwrap() core.Store { return s.Store }

// finished reports whether the last report of every collection in want
// has done == total == want.
func finished(reports []federation.SyncProgress, want map[string]uint64) bool {
	last := map[string]federation.SyncProgress{}
	for _, r := range reports {
		last[r.Collection] = r
	}
	for coll, n := range want {
		r, ok := last[coll]
		if !ok || r.RecordsDone != n || r.RecordsTotal != n || r.BytesDone != r.BytesTotal || r.BytesTotal < n*200 {
			return false
		}
	}
	return true
}

// offline returns the offline peers in st and what waits for each.
func offline(st federation.Stats) map[federation.DeviceID]uint64 {
	out := map[federation.DeviceID]uint64{}
	for _, p := range st.Sync.Progress {
		if p.Reason == federation.WaitOffline {
			out[p.Peer] = p.Waiting
		}
	}
	return out
}

// TestProgressShowsPeriodicWait: records of a periodic collection held
// for the next batch show in Stats.Sync as waiting, for that reason.
func TestProgressShowsPeriodicWait(t *testing.T) {
	ctx := context.Background()
	colls := map[string]federation.Policy{"stats": {Priority: federation.PriorityLow, Mode: federation.ModePeriodic, Interval: time.Hour}}
	a, b, clock, _ := manualPair(t, colls)
	require.NoError(t, a.Put(ctx, "notes", "hello", []byte("connected")))
	waitValue(t, b, "notes", "hello", "connected")
	for i := range 7 {
		require.NoError(t, a.Put(ctx, "stats", fmt.Sprintf("s%d", i), []byte("x")))
	}
	var got federation.SyncProgress
	require.Eventually(t, func() bool {
		st, err := a.Stats(ctx)
		require.NoError(t, err)
		for _, p := range st.Sync.Progress {
			if p.Collection == "stats" {
				got = p
			}
		}
		return got.Reason == federation.WaitPeriodic && got.Waiting == 7
	}, 5*time.Second, 5*time.Millisecond, "last seen: %+v", &got)
	require.Equal(t, b.DeviceID(), got.Peer)
	require.Zero(t, got.RecordsDone)
	clock.Advance(time.Hour)
	waitValue(t, b, "stats", "s6", "x")
}
