package federation_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
)

// TestTypedHelpersMergeAcrossDevices: what two devices write with the
// typed helpers while apart merges as each type's resolver says, with no
// conflict left and no decoding warning.
func TestTypedHelpersMergeAcrossDevices(t *testing.T) {
	ctx := context.Background()
	a, b := startPair(t)
	sub := a.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()

	require.NoError(t, a.Profile("me").Set(ctx, "name", "Anna"))
	require.NoError(t, b.Profile("me").Set(ctx, "city", "Lyon"))
	require.NoError(t, a.Conversation("chat").Append(ctx, "a1", []byte("from a")))
	require.NoError(t, b.Conversation("chat").Append(ctx, "b1", []byte("from b")))
	require.ErrorIs(t, b.Conversation("chat").Append(ctx, "b1", []byte("again")), federation.ErrInvalidArgument)
	require.NoError(t, a.Personality("traits").Contribute(ctx, []float64{1, 0}, 1))
	require.NoError(t, b.Personality("traits").Contribute(ctx, []float64{0, 1}, 1))
	require.ErrorIs(t, b.Personality("traits").Contribute(ctx, []float64{0, 1, 2}, 1), federation.ErrInvalidArgument)
	require.NoError(t, a.Analytics("events").Record(ctx, []byte("e-a")))
	require.NoError(t, b.Analytics("events").Record(ctx, []byte("e-b")))
	h := sha256.Sum256([]byte("same text"))
	require.NoError(t, a.Embedding("mem").Set(ctx, conflict.Embedding{Vector: []float32{1, 2}, ContentHash: h, Model: "m"}))
	require.NoError(t, b.Embedding("mem").Set(ctx, conflict.Embedding{Vector: []float32{1, 2}, ContentHash: h, Model: "m"}))

	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		ra, rb := a.Roots(), b.Roots()
		for _, c := range []string{federation.CollectionProfile, federation.CollectionConversation, federation.CollectionPersonality, federation.CollectionAnalytics, federation.CollectionEmbeddings} {
			if ra[c] != rb[c] {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)

	for _, n := range []*federation.Node{a, b} {
		fields, err := n.Profile("me").Fields(ctx)
		require.NoError(t, err)
		require.JSONEq(t, `"Anna"`, string(fields["name"]))
		require.JSONEq(t, `"Lyon"`, string(fields["city"]))
		msgs, err := n.Conversation("chat").Messages(ctx)
		require.NoError(t, err)
		require.Len(t, msgs, 2)
		mean, weight, err := n.Personality("traits").Value(ctx)
		require.NoError(t, err)
		require.Equal(t, []float64{0.5, 0.5}, mean)
		require.Equal(t, 2.0, weight)
		events, err := n.Analytics("events").Events(ctx)
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("e-a"), []byte("e-b")}, events)
		// Embeddings are on demand: the peer holds the other's as a stub
		// until it fetches it.
		require.NoError(t, n.Fetch(ctx, federation.CollectionEmbeddings, "mem"))
		var e conflict.Embedding
		require.Eventually(t, func() bool {
			var err error
			e, err = n.Embedding("mem").Get(ctx)
			return err == nil
		}, 10*time.Second, 10*time.Millisecond)
		require.False(t, e.Stale, "the same content on both devices is a duplicate, not a rival")
		conflicts, err := n.Conflicts(ctx)
		require.NoError(t, err)
		require.Empty(t, conflicts)
	}
	require.NoError(t, a.Profile("me").Delete(ctx, "city"))
	var city string
	ok, err := a.Profile("me").Get(ctx, "city", &city)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = a.Embedding("missing").Get(ctx)
	require.ErrorIs(t, err, federation.ErrNotFound)
}
