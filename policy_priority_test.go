//go:build !race

package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// TestHighPriorityOvertakesLargeBacklogQUIC: while a 100,000-record
// low-priority backlog moves between two devices over QUIC on loopback
// with libSQL files, one high-priority write made mid-stream reaches the
// peer long before the backlog ends: the test measures when the write
// becomes visible at the peer (its event) against when the backlog's
// last record does, and how much of the backlog arrived before it.
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

	const low, perTxn = 100_000, 1000
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

	var put, seen, end time.Time
	bulk, bulkAtPut, bulkAtSeen := 0, 0, -1
	deadline := time.After(5 * time.Minute)
	for bulk < low || seen.IsZero() {
		select {
		case e := <-sub.C:
			switch e.Collection {
			case "bulk":
				bulk++
				if bulk == low {
					end = time.Now()
				}
			case "urgent":
				seen, bulkAtSeen = time.Now(), bulk
			}
		case <-deadline:
			t.Fatalf("only %d of %d backlog records arrived (urgent seen: %v)", bulk, low, !seen.IsZero())
		}
		// Once the backlog is moving, write the urgent record.
		if put.IsZero() && bulk >= 1000 {
			bulkAtPut, put = bulk, time.Now()
			require.NoError(t, a.Put(ctx, "urgent", "now", []byte("high")))
		}
	}
	require.Zero(t, sub.Dropped())
	latency, rest := seen.Sub(put), end.Sub(put)
	t.Logf("urgent visible %v after its write, with %d backlog records arriving meanwhile; backlog's last record %v after it (%d records at the write)", latency, bulkAtSeen-bulkAtPut, rest, bulkAtPut)
	require.Less(t, bulkAtSeen, low/2, "the urgent record waited for half the backlog")
	require.Less(t, latency, rest/5, "the urgent record arrived late in the backlog")
}
