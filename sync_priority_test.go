package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// TestHighPriorityOvertakesLowBacklog: 10,000 records of a low-priority
// collection are queued for a peer, then one record of a high-priority
// collection: on the same session, the high one arrives before any of the
// backlog, and still nothing is sent twice or left out.
func TestHighPriorityOvertakesLowBacklog(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	cfg := func(c *federation.Config) {
		c.Network.Transport = memFactory(net)
		c.Events.Buffer = 1 << 15
		c.Collections = map[string]federation.Policy{
			"bulk":   {Priority: federation.PriorityLow, Mode: federation.ModeImmediate},
			"urgent": {Priority: federation.PriorityHigh, Mode: federation.ModeImmediate},
		}
	}
	a, b := newNode(t, memstore.New(), cfg), newNode(t, memstore.New(), cfg)
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))

	const low, perTxn = 10_000, 500
	for i := 0; i < low; i += perTxn {
		require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < i+perTxn; j++ {
				if err := tx.Put("bulk", fmt.Sprintf("%05d", j), []byte("low-priority payload")); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, a.Put(ctx, "urgent", "now", []byte("high")))

	sub := b.Subscribe(federation.SubscribeOptions{Collections: []string{"bulk", "urgent"}})
	defer sub.Close()
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	var order []string
	deadline := time.After(60 * time.Second)
	for len(order) < low+1 {
		select {
		case e := <-sub.C:
			order = append(order, e.Collection+"/"+e.Key)
		case <-deadline:
			t.Fatalf("only %d of %d records arrived", len(order), low+1)
		}
	}
	require.Equal(t, "urgent/now", order[0], "the high-priority record arrives before the low backlog")
	require.Equal(t, "bulk/00000", order[1])
	require.Equal(t, fmt.Sprintf("bulk/%05d", low-1), order[low])
	require.Zero(t, sub.Dropped())

	// Nothing was sent twice: the overtaking record is not sent again when
	// the in-order stream reaches it, and both sides converge.
	require.Eventually(t, func() bool {
		sa, err := a.Stats(ctx)
		require.NoError(t, err)
		sb, err := b.Stats(ctx)
		require.NoError(t, err)
		return sa.VersionVector.Compare(sb.VersionVector) == core.Equal
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, a.Roots(), b.Roots())
	sa, err := a.Stats(ctx)
	require.NoError(t, err)
	own := sa.VersionVector[a.DeviceID()]
	require.GreaterOrEqual(t, own, uint64(low+1))
	for _, p := range a.Peers() {
		require.Equal(t, own, p.ChangesSent, "each of a's changes sent once")
	}
	for _, p := range b.Peers() {
		require.Zero(t, p.Redundant)
		require.Equal(t, own, p.ChangesRecv)
	}
}
