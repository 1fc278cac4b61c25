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

// TestSkewedOverwriteStaysCausal: a device whose clock is 24 h ahead writes
// a key; a device with a correct clock sees that version and overwrites it;
// a third device wrote the key concurrently. The overwrite causally
// supersedes the far-future version, so it must never lose to it: every
// device must end on the same record, and the far-future value must not
// come back. Before the fix the overwrite carried the writer's own (24 h
// earlier) timestamp: the third device, holding the far-future version
// merged with its own concurrent one, judged the overwrite concurrent and
// kept the far-future value, while the overwriting device kept its own, so
// the devices ended on different values with equal version vectors.
func TestSkewedOverwriteStaysCausal(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	mk := func(skew time.Duration) *federation.Node {
		return newNode(t, memstore.New(), func(c *federation.Config) {
			c.Network.Transport = memFactory(net)
			c.Clock = skewedClock{off: skew}
		})
	}
	ahead, b, c := mk(24*time.Hour), mk(0), mk(0)
	nodes := []*federation.Node{ahead, b, c}
	for _, x := range nodes {
		for _, y := range nodes {
			if x != y {
				x.TrustDevice(y.PublicKey())
			}
		}
		require.NoError(t, x.Start(ctx))
	}
	require.NoError(t, c.Put(ctx, "notes", "k", []byte("concurrent")))
	require.NoError(t, ahead.Put(ctx, "notes", "k", []byte("future")))
	require.NoError(t, ahead.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		r, err := b.Get(ctx, "notes", "k")
		return err == nil && string(r) == "future"
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, b.Put(ctx, "notes", "k", []byte("overwrite")))
	got, err := b.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "overwrite", string(got), "a local write wins over what it supersedes")

	require.NoError(t, c.Connect(ctx, ahead.Addr(), ahead.DeviceID()))
	require.NoError(t, c.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		var vvs []federation.VersionVector
		for _, n := range nodes {
			st, err := n.Stats(ctx)
			if err != nil {
				return false
			}
			vvs = append(vvs, st.VersionVector)
		}
		return vvs[0].Compare(vvs[1]) == 0 && vvs[1].Compare(vvs[2]) == 0 && len(vvs[0]) == 3
	}, 20*time.Second, 10*time.Millisecond, "version vectors never met")
	// Give a repair time to run, then every device must hold the overwrite
	// (it follows the far-future version and beats the concurrent one, which
	// is older than the far-future version it superseded).
	var held []string
	require.Eventually(t, func() bool {
		held = held[:0]
		ok := true
		for _, n := range nodes {
			r, err := n.GetRecord(ctx, "notes", "k")
			held = append(held, fmt.Sprintf("%q %v", r.Value, err))
			ok = ok && err == nil && string(r.Value) == "overwrite"
		}
		return ok && ahead.Root("notes") == b.Root("notes") && b.Root("notes") == c.Root("notes")
	}, 10*time.Second, 10*time.Millisecond, "devices did not all end on the overwrite: %v", &held)
}

// TestSkewedOverwriteAfterRestart: the mark that makes local writes follow
// far-future versions survives a restart (libSQL file, real QUIC): a device
// that received a version stamped 24 h beyond its clock, closed and
// reopened, still stamps its overwrite after that version.
func TestSkewedOverwriteAfterRestart(t *testing.T) {
	ctx := context.Background()
	open := func(dir string, skew time.Duration) *federation.Node {
		n, err := federation.New(federation.Config{
			Dir:     dir,
			Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
			Clock:   skewedClock{off: skew},
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		require.NoError(t, n.Start(ctx))
		return n
	}
	dirB := t.TempDir()
	ahead, b := open(t.TempDir(), 24*time.Hour), open(dirB, 0)
	ahead.TrustDevice(b.PublicKey())
	b.TrustDevice(ahead.PublicKey())
	require.NoError(t, ahead.Put(ctx, "notes", "k", []byte("future")))
	require.NoError(t, ahead.Connect(ctx, b.Addr(), b.DeviceID()))
	var future federation.Record
	require.Eventually(t, func() bool {
		r, err := b.GetRecord(ctx, "notes", "k")
		future = r
		return err == nil && string(r.Value) == "future"
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, b.Close())
	b = open(dirB, 0)
	require.NoError(t, b.Put(ctx, "notes", "k", []byte("overwrite")))
	r, err := b.GetRecord(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "overwrite", string(r.Value))
	require.Greater(t, r.Timestamp, future.Timestamp, "the overwrite is stamped after the far-future version it replaces")
}
