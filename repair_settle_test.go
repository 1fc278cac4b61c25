package federation_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// divergedStore returns a memstore holding notes/k = value, written by a
// device that is not in the test, with version vector {that device: 1}:
// two such stores hold the same changes (equal version vectors) but
// different records, as after a merge that settled differently per device.
func divergedStore(t *testing.T, value string, at int64) *memstore.Store {
	t.Helper()
	ctx := context.Background()
	z := core.DeviceID{0x7a}
	s := memstore.New()
	rec := core.Record{Collection: "notes", Key: "k", Value: []byte(value), Timestamp: core.MakeTimestamp(at, 0),
		Origin: z, Seq: 1, Context: core.VersionVector{z: 1}}
	require.NoError(t, s.Commit(ctx, core.Batch{Records: []core.Record{rec}}))
	require.NoError(t, s.Commit(ctx, core.Batch{Advance: core.VersionVector{z: 1}}))
	return s
}

// stubbornResolver keeps the local version of every conflict it is asked
// to settle, for its first refuse calls (forever when refuse < 0), then
// settles by last-writer-wins: a host resolver that is not convergent,
// for a while or for good, so that a repair cannot settle the roots.
type stubbornResolver struct {
	refuse  int64
	refused atomic.Int64
}

func (s *stubbornResolver) Resolve(ctx context.Context, c core.Conflict) (core.Resolution, error) {
	if s.refuse < 0 || s.refused.Load() < s.refuse {
		s.refused.Add(1)
		return core.Resolution{Value: c.Local.Value, Deleted: c.Local.Deleted}, nil
	}
	return conflict.LWW{}.Resolve(ctx, c)
}

// withResolver gives the notes collection resolver r.
func withResolver(r core.Resolver) func(*federation.Config) {
	return func(c *federation.Config) {
		c.Collections = map[string]federation.Policy{"notes": {Priority: core.PriorityMedium, Mode: core.ModeImmediate, Resolver: r}}
	}
}

func repairPair(t *testing.T, sa, sb federation.Store, ra, rb core.Resolver) (a, b *federation.Node) {
	t.Helper()
	net := transport.NewMemNetwork()
	a = newNode(t, sa, func(c *federation.Config) { c.Network.Transport = memFactory(net) }, withResolver(ra))
	b = newNode(t, sb, func(c *federation.Config) { c.Network.Transport = memFactory(net) }, withResolver(rb))
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	ctx := context.Background()
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.NotEqual(t, a.Root("notes"), b.Root("notes"))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	return a, b
}

// TestRepairSettlesEqualVVDivergence: equal version vectors, a record that
// differs. Repair must settle it (both end with the last writer's version).
// Before, repair ran once per side and each kept its own version (equal
// causal contexts counted as "already held"): diverged for good.
func TestRepairSettlesEqualVVDivergence(t *testing.T) {
	ctx := context.Background()
	a, b := repairPair(t, divergedStore(t, "a", 1000), divergedStore(t, "b", 2000), conflict.LWW{}, conflict.LWW{})
	require.Eventually(t, func() bool { return a.Root("notes") == b.Root("notes") }, 10*time.Second, 10*time.Millisecond, "roots never settled")
	for _, n := range []*federation.Node{a, b} {
		v, err := n.Get(ctx, "notes", "k")
		require.NoError(t, err)
		require.Equal(t, "b", string(v))
	}
}

// TestRepairRetriesUntilSettled: the first repairs do not take (the host's
// resolver keeps its own version twice); repair must keep going, with
// backoff, until the roots are equal. Before, the same pair of differing
// roots was repaired once and never again.
func TestRepairRetriesUntilSettled(t *testing.T) {
	ctx := context.Background()
	sa := &stubbornResolver{refuse: 2}
	a, b := repairPair(t, divergedStore(t, "a", 1000), divergedStore(t, "b", 2000), sa, conflict.LWW{})
	require.Eventually(t, func() bool { return a.Root("notes") == b.Root("notes") }, 15*time.Second, 10*time.Millisecond, "roots never settled")
	require.EqualValues(t, 2, sa.refused.Load(), "the first two resolutions kept the local version")
	v, err := a.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "b", string(v))
	st, err := a.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.RepairsUnsettled, "settled before it was reported")
}

// TestRepairUnsettledReported: both hosts' resolvers always keep their own
// version (not convergent). Repair cannot settle: the node must say so (log, event with a
// reason, Stats counter) and keep retrying with backoff, not in a hot loop,
// without tearing the session down.
func TestRepairUnsettledReported(t *testing.T) {
	ctx := context.Background()
	sa := &stubbornResolver{refuse: -1}
	a := func() *federation.Node {
		a, b := repairPair(t, divergedStore(t, "a", 1000), divergedStore(t, "b", 2000), sa, &stubbornResolver{refuse: -1})
		_ = b
		return a
	}()
	sub := a.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()
	start := time.Now()
	var got federation.Event
	func() {
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e := <-sub.C:
				if e.Kind == federation.EventRepairUnsettled {
					got = e
					return
				}
			case <-deadline:
				t.Fatal("no EventRepairUnsettled")
			}
		}
	}()
	t.Logf("reported after %s: %s", time.Since(start).Round(time.Millisecond), got.Reason)
	require.Equal(t, "notes", got.Collection)
	require.NotEmpty(t, got.Reason)
	st, err := a.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.RepairsUnsettled)

	// Still retrying, slowly, on the same session.
	time.Sleep(5 * time.Second)
	peers := a.Peers()
	require.Len(t, peers, 1, "the session stays up")
	elapsed := time.Since(start)
	t.Logf("%d repairs driven in %s, %d resolutions kept the local version", peers[0].Repairs, elapsed.Round(time.Millisecond), sa.refused.Load())
	require.GreaterOrEqual(t, peers[0].Repairs, uint64(3), "repair keeps trying")
	require.LessOrEqual(t, peers[0].Repairs, uint64(8), "repair retries with backoff, not in a loop")
	st, err = a.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, st.RepairsUnsettled, "reported once per state")
}
