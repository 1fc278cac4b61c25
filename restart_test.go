package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/transport"
)

// scanFull returns every record of a collection, tombstones included.
func scanFull(t *testing.T, n *federation.Node, coll string) []federation.Record {
	t.Helper()
	var out []federation.Record
	require.NoError(t, n.Scan(context.Background(), coll, federation.KeyRange{IncludeDeleted: true}, func(r federation.Record) error {
		out = append(out, r)
		return nil
	}))
	return out
}

// requireSameRecords checks that two devices hold exactly the same
// versions: value, tombstone, timestamp, origin, sequence and context.
func requireSameRecords(t *testing.T, a, b []federation.Record) {
	t.Helper()
	require.Equal(t, len(a), len(b), "record counts differ")
	for i := range a {
		ra, rb := a[i], b[i]
		desc := fmt.Sprintf("%s/%s", ra.Collection, ra.Key)
		require.Equal(t, ra.Key, rb.Key)
		require.Equal(t, ra.Deleted, rb.Deleted, desc)
		require.Equal(t, string(ra.Value), string(rb.Value), desc)
		require.Equal(t, ra.Timestamp, rb.Timestamp, desc)
		require.Equal(t, ra.Origin, rb.Origin, desc)
		require.Equal(t, ra.Seq, rb.Seq, desc)
		require.Equal(t, 0, int(ra.Context.Compare(rb.Context)), "%s: context %v vs %v", desc, ra.Context, rb.Context)
	}
}

// TestMergedContextSurvivesRestart: concurrent writes of the same keys on
// two devices with libSQL files. On each device some keys resolve to the
// incoming change's own value, with the merged (wider) causal context: the
// file must hold that merged version, the one the Merkle tree hashed, so
// that records are equal on both devices and roots stay equal after both
// restart from their files.
func TestMergedContextSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string) *federation.Node {
		n, err := federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{Transport: memFactory(net)}})
		require.NoError(t, err)
		return n
	}
	a, b := open(dirA), open(dirB)
	defer func() { _ = a.Close(); _ = b.Close() }()
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	const coll = "notes"
	// Concurrent versions of every key, written while apart; either side
	// writes last for half the keys, so each side receives winning changes.
	for i := range 8 {
		key := fmt.Sprintf("k%d", i)
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		require.NoError(t, first.Put(ctx, coll, key, []byte("first "+key)))
		time.Sleep(2 * time.Millisecond)
		if i%4 == 3 {
			require.NoError(t, second.Delete(ctx, coll, key))
		} else {
			require.NoError(t, second.Put(ctx, coll, key, []byte("second "+key)))
		}
	}
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		return len(a.Roots()) == 1 && a.Root(coll) == b.Root(coll) &&
			len(scanFull(t, a, coll)) == 8 && len(scanFull(t, b, coll)) == 8
	}, 10*time.Second, 10*time.Millisecond, "roots never converged")
	recsA, recsB := scanFull(t, a, coll), scanFull(t, b, coll)
	requireSameRecords(t, recsA, recsB)
	for _, r := range recsA {
		require.Len(t, r.Context, 2, "%s: the merged version covers both writes", r.Key)
	}
	root := a.Root(coll)

	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	a, b = open(dirA), open(dirB)
	require.Equal(t, root, a.Root(coll), "root of a after restart")
	require.Equal(t, root, b.Root(coll), "root of b after restart")
	requireSameRecords(t, recsA, scanFull(t, a, coll))
	requireSameRecords(t, recsA, scanFull(t, b, coll))
}
