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

// manualPair starts two nodes on an in-memory network behind a tap, both
// on one manual clock that the test never advances unless it says so,
// trusting each other and connected.
func manualPair(t *testing.T, colls map[string]federation.Policy) (a, b *federation.Node, clock *core.ManualClock, tp *tap) {
	t.Helper()
	ctx := context.Background()
	net := transport.NewMemNetwork()
	clock = core.NewManualClock(time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC))
	tp = &tap{}
	cfg := func(c *federation.Config) {
		c.Network.Transport = tp.wrap(memFactory(net))
		c.Clock = clock
		c.Collections = colls
		c.Events.Buffer = 1 << 12
	}
	a, b = newNode(t, memstore.New(), cfg), newNode(t, memstore.New(), cfg)
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	return a, b, clock, tp
}

// TestImmediateIsPushedOnWrite: a write to an immediate collection reaches
// a connected peer, and its subscriber, on the write itself: no timer of
// the node runs (the manual clock never moves), so nothing polls.
func TestImmediateIsPushedOnWrite(t *testing.T) {
	ctx := context.Background()
	a, b, clock, _ := manualPair(t, nil)
	start := clock.Now()
	sub := b.Subscribe(federation.SubscribeOptions{Collections: []string{federation.CollectionProfile}})
	defer sub.Close()
	for i := range 20 {
		key := fmt.Sprintf("k%02d", i)
		require.NoError(t, a.Put(ctx, federation.CollectionProfile, key, []byte(`{}`)))
		select {
		case e := <-sub.C:
			require.Equal(t, key, e.Key)
			require.False(t, e.Local)
		case <-time.After(5 * time.Second):
			t.Fatalf("write %d never pushed to the peer", i)
		}
	}
	require.True(t, clock.Now().Equal(start), "the clock never moved: no timer delivered the writes")
}

// TestPeriodicShipsOneBatchPerInterval: writes to a periodic collection
// wait for the interval (on Config.Clock, a manual clock here): nothing of
// them crosses the transport before it passes, even while an immediate
// collection written after them goes out at once, and once it passes,
// all of them travel together, in one Changes frame.
func TestPeriodicShipsOneBatchPerInterval(t *testing.T) {
	ctx := context.Background()
	const interval = 10 * time.Minute
	colls := map[string]federation.Policy{
		"stats": {Priority: federation.PriorityLow, Mode: federation.ModePeriodic, Interval: interval},
		"notes": {Priority: federation.PriorityMedium, Mode: federation.ModeImmediate},
	}
	a, b, clock, tp := manualPair(t, colls)
	require.NoError(t, a.Put(ctx, "notes", "hello", []byte("connected")))
	waitValue(t, b, "notes", "hello", "connected")

	const writes = 20
	for i := range writes {
		require.NoError(t, a.Put(ctx, "stats", fmt.Sprintf("s%02d", i), []byte("counted")))
	}
	// An immediate write behind the waiting batch is not held by it.
	require.NoError(t, a.Put(ctx, "notes", "after", []byte("goes at once")))
	waitValue(t, b, "notes", "after", "goes at once")
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, tp.changesOf(t, "stats"), "a periodic change crossed the transport before its interval")
	_, err := b.Get(ctx, "stats", "s00")
	require.ErrorIs(t, err, federation.ErrNotFound)

	// Just short of the interval: still nothing.
	clock.Advance(interval - time.Second)
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, tp.changesOf(t, "stats"))

	clock.Advance(time.Second)
	require.Eventually(t, func() bool {
		n := 0
		_ = b.Scan(ctx, "stats", federation.KeyRange{}, func(federation.Record) error { n++; return nil })
		return n == writes
	}, 5*time.Second, 5*time.Millisecond)
	frames := tp.changesOf(t, "stats")
	require.Len(t, frames, 1, "the batch travels in one frame")
	require.Len(t, frames[0], writes)

	// The next interval starts when the flush ends: a write now waits again.
	require.NoError(t, a.Put(ctx, "stats", "later", []byte("next batch")))
	time.Sleep(200 * time.Millisecond)
	require.Len(t, tp.changesOf(t, "stats"), 1)
	clock.Advance(interval)
	waitValue(t, b, "stats", "later", "next batch")
	require.Len(t, tp.changesOf(t, "stats"), 2)
}

// immediateAnalytics makes analytics travel as they are written (their
// default is periodic), keeping their resolver: for tests about merging.
func immediateAnalytics(c *federation.Config) {
	p := federation.DefaultPolicies()[federation.CollectionAnalytics]
	p.Mode = federation.ModeImmediate
	if c.Collections == nil {
		c.Collections = map[string]federation.Policy{}
	}
	c.Collections[federation.CollectionAnalytics] = p
}

// TestDevicePolicyReachesEveryDevice: a sync policy set on one device for
// another (the laptop makes notes periodic towards the tablet) is a
// registry operation: it reaches the phone, whose sender then holds the
// phone's notes back from the tablet while the laptop gets them at once;
// clearing it, again from the laptop, releases them.
func TestDevicePolicyReachesEveryDevice(t *testing.T) {
	ctx := context.Background()
	phone, laptop, tablet := quicNode(t, "phone"), quicNode(t, "laptop"), quicNode(t, "tablet")
	pairInto(t, phone, laptop)
	pairInto(t, phone, tablet)
	require.Eventually(t, func() bool { return trusts(ctx, laptop, tablet.DeviceID(), federation.TrustTrusted) }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, phone.Put(ctx, "notes", "first", []byte("to all")))
	waitValue(t, tablet, "notes", "first", "to all")
	waitValue(t, laptop, "notes", "first", "to all")

	require.NoError(t, laptop.SetDevicePolicy(ctx, tablet.DeviceID(), []byte(`{"collections": {"notes": {"mode": "periodic"}}}`)))
	policyAt := func(n *federation.Node) string {
		devs, err := n.Devices(ctx)
		require.NoError(t, err)
		for _, d := range devs {
			if d.ID == tablet.DeviceID() {
				return string(d.Policy)
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return policyAt(phone) != "" }, 5*time.Second, 5*time.Millisecond, "the policy reaches the phone")

	require.NoError(t, phone.Put(ctx, "notes", "second", []byte("held from the tablet")))
	waitValue(t, laptop, "notes", "second", "held from the tablet")
	time.Sleep(2 * time.Second) // two heartbeats of every sender
	_, err := tablet.Get(ctx, "notes", "second")
	require.ErrorIs(t, err, federation.ErrNotFound, "the tablet's periodic policy holds the note back (interval: one minute)")

	require.NoError(t, laptop.SetDevicePolicy(ctx, tablet.DeviceID(), nil))
	waitValue(t, tablet, "notes", "second", "held from the tablet")
}

// TestPeriodicSurvivesReconnect: a session that ends and comes back
// within the interval does not flush the waiting batch on connecting: the
// node remembers when the previous flush to that peer ended.
func TestPeriodicSurvivesReconnect(t *testing.T) {
	ctx := context.Background()
	const interval = 10 * time.Minute
	colls := map[string]federation.Policy{"stats": {Priority: federation.PriorityLow, Mode: federation.ModePeriodic, Interval: interval}}
	a, b, clock, tp := manualPair(t, colls)
	require.NoError(t, a.Put(ctx, "notes", "hello", []byte("connected")))
	waitValue(t, b, "notes", "hello", "connected")
	require.NoError(t, a.Put(ctx, "stats", "s", []byte("waits")))
	time.Sleep(100 * time.Millisecond)

	tp.closeAll()
	require.Eventually(t, func() bool { return len(a.Peers()) == 0 && len(b.Peers()) == 0 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Put(ctx, "notes", "again", []byte("reconnected")))
	waitValue(t, b, "notes", "again", "reconnected")
	time.Sleep(200 * time.Millisecond)
	_, err := b.Get(ctx, "stats", "s")
	require.ErrorIs(t, err, federation.ErrNotFound, "the new session flushed the batch early")
	require.Empty(t, tp.changesOf(t, "stats"))

	clock.Advance(interval)
	waitValue(t, b, "stats", "s", "waits")
}

// TestPeriodicHighPriorityDoesNotOvertake: a high-priority collection
// that is periodic waits for its interval too, even when the stream is
// held on a low-priority batch that it would otherwise overtake.
func TestPeriodicHighPriorityDoesNotOvertake(t *testing.T) {
	ctx := context.Background()
	const interval = 10 * time.Minute
	colls := map[string]federation.Policy{
		"stats": {Priority: federation.PriorityLow, Mode: federation.ModePeriodic, Interval: interval},
		"vip":   {Priority: federation.PriorityHigh, Mode: federation.ModePeriodic, Interval: interval},
	}
	a, b, clock, tp := manualPair(t, colls)
	require.NoError(t, a.Put(ctx, "notes", "hello", []byte("connected")))
	waitValue(t, b, "notes", "hello", "connected")
	require.NoError(t, a.Put(ctx, "stats", "s", []byte("low")))
	require.NoError(t, a.Put(ctx, "vip", "v", []byte("high")))
	require.NoError(t, a.Put(ctx, "notes", "after", []byte("immediate")))
	waitValue(t, b, "notes", "after", "immediate")
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, tp.changesOf(t, "vip"), "a periodic high-priority change went ahead of its interval")
	clock.Advance(interval)
	waitValue(t, b, "vip", "v", "high")
	waitValue(t, b, "stats", "s", "low")
}
