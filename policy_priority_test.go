//go:build !race

package federation_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// TestHighPriorityOvertakesLargeBacklogQUIC: while a 100,000-record
// low-priority backlog (transactions of 1,000) moves between two devices
// over QUIC on loopback with libSQL files, high-priority writes made one
// after another mid-stream each reach the peer while the backlog is still
// moving, and soon: the test counts the backlog records the peer commits
// between each write and its visibility there (its event). The stream is
// paced while something may overtake it (internal/syncer/sync_pace.go),
// so a write waits behind about one backlog transaction's commit, not
// behind every frame the transport would otherwise queue: the median
// write waits behind at most one backlog transaction's records and the
// slowest behind at most two (measured paced: median 0, max 1,000,
// ~10 ms; unpaced: median 3,000, max 11,000, ~63 ms).
func TestHighPriorityOvertakesLargeBacklogQUIC(t *testing.T) {
	ctx := context.Background()
	cfg := func(c *federation.Config) {
		c.Events.Buffer = 1 << 18
		c.Collections = map[string]federation.Policy{
			"bulk":   {Priority: federation.PriorityLow, Mode: federation.ModeImmediate},
			"urgent": {Priority: federation.PriorityHigh, Mode: federation.ModeImmediate},
		}
	}
	a, b := quicNode(t, "a", cfg), quicNode(t, "b", cfg)
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())

	const low, perTxn, writes = 100_000, 1000, 15
	value := make([]byte, 100)
	for i := 0; i < low; i += perTxn {
		require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < i+perTxn; j++ {
				if err := tx.Put("bulk", fmt.Sprintf("%06d", j), value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	sub := b.Subscribe(federation.SubscribeOptions{Collections: []string{"bulk", "urgent"}})
	defer sub.Close()
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))

	// One urgent write at a time, each once the previous one is visible
	// and another 3,000 backlog records arrived.
	type sample struct {
		put                   time.Time
		latency               time.Duration
		bulkAtPut, bulkAtSeen int
	}
	var samples []sample
	var end time.Time
	bulk, pending := 0, false
	deadline := time.After(5 * time.Minute)
	for bulk < low || pending {
		if !pending && len(samples) < writes && bulk >= 1000+3000*len(samples) {
			samples = append(samples, sample{put: time.Now(), bulkAtPut: bulk})
			pending = true
			require.NoError(t, a.Put(ctx, "urgent", fmt.Sprint(len(samples)), []byte("high")))
		}
		select {
		case e := <-sub.C:
			switch e.Collection {
			case "bulk":
				bulk++
				if bulk == low {
					end = time.Now()
				}
			case "urgent":
				s := &samples[len(samples)-1]
				require.Equal(t, fmt.Sprint(len(samples)), e.Key)
				s.latency, s.bulkAtSeen = time.Since(s.put), bulk
				pending = false
			}
		case <-deadline:
			t.Fatalf("only %d of %d backlog records arrived (%d urgent writes, one pending: %v)", bulk, low, len(samples), pending)
		}
	}
	require.Zero(t, sub.Dropped())
	require.Len(t, samples, writes, "the backlog ended before every urgent write was made")
	waits := make([]int, len(samples))
	var lat []time.Duration
	for i, s := range samples {
		require.Less(t, s.bulkAtSeen, low, "urgent write %d became visible only once the backlog had ended", i+1)
		waits[i] = s.bulkAtSeen - s.bulkAtPut
		lat = append(lat, s.latency)
	}
	slices.Sort(waits)
	slices.Sort(lat)
	t.Logf("%d urgent writes during the backlog: visible after %v (median), %v (max); backlog records committed at the peer meanwhile: median %d, max %d; backlog ended %v after the last write",
		writes, lat[len(lat)/2], lat[len(lat)-1], waits[len(waits)/2], waits[len(waits)-1], end.Sub(samples[len(samples)-1].put))
	require.LessOrEqual(t, waits[len(waits)/2], perTxn, "an urgent write waited behind more than one backlog transaction (median)")
	require.LessOrEqual(t, waits[len(waits)-1], 2*perTxn, "an urgent write waited behind more than two backlog transactions")
}
