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

// TestRepairAfterCompaction: the changelog that would bring a peer up to
// date is gone, so deltas cannot; the Merkle repair must, and both sides
// must end with equal roots, records and version vectors.
func TestRepairAfterCompaction(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	sa, sb := memstore.New(), memstore.New()
	a := newNode(t, sa, func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	b := newNode(t, sb, func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))

	for i := range 300 {
		require.NoError(t, a.Put(ctx, "notes", fmt.Sprintf("a-%03d", i), []byte(fmt.Sprintf("from a %d", i))))
	}
	require.NoError(t, a.Delete(ctx, "notes", "a-007"))
	require.NoError(t, b.Put(ctx, "notes", "b-only", []byte("from b")))
	require.NoError(t, b.Put(ctx, "settings", "name", []byte("b's name")))

	// A compacts its whole log, as if B had acknowledged it long ago.
	vv, err := sa.VersionVector(ctx)
	require.NoError(t, err)
	removed, err := sa.Truncate(ctx, vv)
	require.NoError(t, err)
	require.EqualValues(t, 301, removed)

	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		ra, rb := a.Roots(), b.Roots()
		return len(ra) == 2 && ra["notes"] == rb["notes"] && ra["settings"] == rb["settings"]
	}, 10*time.Second, 10*time.Millisecond, "roots never converged")

	v, err := b.Get(ctx, "notes", "a-299")
	require.NoError(t, err)
	require.Equal(t, "from a 299", string(v))
	_, err = b.Get(ctx, "notes", "a-007")
	require.ErrorIs(t, err, federation.ErrNotFound, "the tombstone was repaired too")
	v, err = a.Get(ctx, "settings", "name")
	require.NoError(t, err)
	require.Equal(t, "b's name", string(v))

	require.Eventually(t, func() bool {
		va, _ := sa.VersionVector(ctx)
		vb, _ := sb.VersionVector(ctx)
		return va.Compare(vb) == 0
	}, 5*time.Second, 10*time.Millisecond, "version vectors never converged")
	var repairs uint64
	for _, p := range a.Peers() {
		repairs += p.Repairs
	}
	require.EqualValues(t, 1, repairs, "one repair, driven by the side whose log was compacted")

	// Deltas resume after the repair.
	require.NoError(t, a.Put(ctx, "notes", "after", []byte("delta")))
	waitValue(t, b, "notes", "after", "delta")
}
