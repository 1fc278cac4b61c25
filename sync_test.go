package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

func memFactory(net *transport.MemNetwork) federation.TransportFactory {
	return func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		return net.ListenConfig(transport.MemConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, Logger: p.Logger})
	}
}

func startPair(t *testing.T) (a, b *federation.Node) {
	t.Helper()
	ctx := context.Background()
	net := transport.NewMemNetwork()
	mk := func() *federation.Node {
		return newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	}
	a, b = mk(), mk()
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	return a, b
}

func waitValue(t *testing.T, n *federation.Node, coll, key, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, err := n.Get(context.Background(), coll, key)
		return err == nil && string(v) == want
	}, 5*time.Second, 5*time.Millisecond, "%s/%s never became %q", coll, key, want)
}

func TestTwoNodesSyncBothWays(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	require.NoError(t, a.Put(ctx, "notes", "before", []byte("written before connecting")))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	waitValue(t, b, "notes", "before", "written before connecting")

	require.NoError(t, b.Put(ctx, "notes", "live", []byte("pushed while connected")))
	waitValue(t, a, "notes", "live", "pushed while connected")

	require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
		for i := range 50 {
			if err := tx.Put("notes", fmt.Sprintf("txn-%02d", i), []byte("x")); err != nil {
				return err
			}
		}
		return tx.Delete("notes", "before")
	}))
	require.Eventually(t, func() bool {
		_, err := b.Get(ctx, "notes", "before")
		return err != nil
	}, 5*time.Second, 5*time.Millisecond)
	n := 0
	require.NoError(t, b.Scan(ctx, "notes", federation.KeyRange{Prefix: "txn-"}, func(federation.Record) error { n++; return nil }))
	require.Equal(t, 50, n)
}

func TestLocalOnlyCollectionNeverLeaves(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Put(ctx, federation.CollectionCache, "secret", []byte("local")))
	require.NoError(t, a.Put(ctx, "notes", "marker", []byte("m")))
	waitValue(t, b, "notes", "marker", "m")
	_, err := b.Get(ctx, federation.CollectionCache, "secret")
	require.ErrorIs(t, err, federation.ErrNotFound)
}

func TestConcurrentWritesConvergeLWW(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	// Written while apart: truly concurrent versions of one key.
	require.NoError(t, a.Put(ctx, "settings", "name", []byte("from a")))
	require.NoError(t, b.Put(ctx, "settings", "name", []byte("from b")))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		va, errA := a.GetRecord(ctx, "settings", "name")
		vb, errB := b.GetRecord(ctx, "settings", "name")
		return errA == nil && errB == nil && string(va.Value) == string(vb.Value) &&
			va.Context.Compare(vb.Context) == 0
	}, 5*time.Second, 5*time.Millisecond)
	ra, _ := a.GetRecord(ctx, "settings", "name")
	require.Len(t, ra.Context, 2, "the merged version covers both writes")
}

// TestLargeValuesNeverExceedFrameLimit: values near the 4 MiB maximum,
// mixed with small ones, travel in frames the receiver accepts.
func TestLargeValuesNeverExceedFrameLimit(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i)
	}
	require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
		// Just under a frame's worth of small values, then a 4 MiB one:
		// packed together they would exceed the receiver's frame limit.
		for i := range 294 {
			if err := tx.Put("mixed", fmt.Sprintf("small-%03d", i), make([]byte, 7000)); err != nil {
				return err
			}
		}
		return tx.Put("mixed", "zz-big", big)
	}))
	require.NoError(t, a.Put(ctx, "mixed", "zz-big-2", big))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		v, err := b.Get(ctx, "mixed", "zz-big-2")
		return err == nil && len(v) == len(big)
	}, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, a.Root("mixed"), b.Root("mixed"))
}

// TestBothSidesSendingAtOnceDoNotDeadlock: two devices each holding more
// than a stream's flow-control window for the other sync at the same time.
// (Acks written by the receive goroutine once made both sides block
// writing while neither read.)
func TestBothSidesSendingAtOnceDoNotDeadlock(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	const n = 5000
	for _, node := range []*federation.Node{a, b} {
		for j := 0; j < n; j += 500 {
			require.NoError(t, node.Update(ctx, func(tx *federation.Tx) error {
				for k := j; k < j+500; k++ {
					// The same keys on both sides: every change conflicts.
					if err := tx.Put("bulk", fmt.Sprintf("k%05d", k), make([]byte, 64)); err != nil {
						return err
					}
				}
				return nil
			}))
		}
	}
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		sa, _ := a.Stats(ctx)
		sb, _ := b.Stats(ctx)
		return sa.VersionVector.Compare(sb.VersionVector) == 0 && len(sa.VersionVector) == 2 && a.Root("bulk") == b.Root("bulk")
	}, 20*time.Second, 10*time.Millisecond, "both directions must complete")
}
