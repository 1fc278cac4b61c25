package federation_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/crdt"
)

// TestPutRefusesUndecodableTypedValues: a value that the collection's
// resolver cannot decode is the writer's error at Put, for every typed
// collection, while well-formed values and untyped collections pass.
func TestPutRefusesUndecodableTypedValues(t *testing.T) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer n.Close()

	garbage := []byte("not an encoding of anything \x00\xff")
	for _, coll := range []string{
		federation.CollectionProfile, federation.CollectionConversation, federation.CollectionPersonality,
		federation.CollectionEmbeddings, federation.CollectionAnalytics,
	} {
		err := n.Put(ctx, coll, "k", garbage)
		require.ErrorIs(t, err, federation.ErrInvalidArgument, coll)
		require.ErrorIs(t, err, conflict.ErrMalformed, coll)
		_, err = n.Get(ctx, coll, "k")
		require.ErrorIs(t, err, federation.ErrNotFound, "%s: a refused write leaves nothing", coll)
		// Inside a transaction too, and the transaction's other writes are
		// not committed when fn returns the error.
		err = n.Update(ctx, func(tx *federation.Tx) error {
			if err := tx.Put("notes", "x", []byte("fine")); err != nil {
				return err
			}
			return tx.Put(coll, "k", garbage)
		})
		require.ErrorIs(t, err, federation.ErrInvalidArgument, coll)
		_, err = n.Get(ctx, "notes", "x")
		require.ErrorIs(t, err, federation.ErrNotFound)
	}
	require.ErrorIs(t, n.Put(ctx, federation.CollectionEmbeddings, "k", nil), federation.ErrInvalidArgument, "an embedding has no empty form")

	// Well-formed values of each type are accepted.
	prof, err := conflict.ProfileSet(nil, "name", "Anna", 1, n.DeviceID())
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, federation.CollectionProfile, "me", prof))
	log := &crdt.Log{}
	require.NoError(t, log.Append(crdt.Message{ID: "m1", Time: 1, Device: n.DeviceID(), Body: []byte("hi")}))
	require.NoError(t, n.Put(ctx, federation.CollectionConversation, "chat", log.Encode()))
	avg := crdt.NewAverage(2)
	require.NoError(t, avg.Add(n.DeviceID(), []float64{0.5, 0.5}, 1))
	require.NoError(t, n.Put(ctx, federation.CollectionPersonality, "traits", avg.Encode()))
	emb, err := conflict.Embedding{Vector: []float32{1, 2}, Model: "m"}.Encode()
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, federation.CollectionEmbeddings, "e", emb))
	ev, err := conflict.EventsAppend(nil, []byte("opened"))
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, federation.CollectionAnalytics, "sessions", ev))
	// Empty values are the empty profile, log, register and set.
	for _, coll := range []string{federation.CollectionProfile, federation.CollectionConversation, federation.CollectionPersonality, federation.CollectionAnalytics} {
		require.NoError(t, n.Put(ctx, coll, "empty", nil), coll)
	}
	// Untyped collections take any bytes.
	require.NoError(t, n.Put(ctx, federation.CollectionMedia, "blob", garbage))
	require.NoError(t, n.Put(ctx, "notes", "n", garbage))
}

// TestKeyRules: the documented rules on keys and names hold at Put and
// Tx.Put: no empty key, UTF-8 without NUL, the size limits.
func TestKeyRules(t *testing.T) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer n.Close()
	for _, c := range []struct{ coll, key string }{
		{"notes", ""},
		{"notes", "a\x00b"},
		{"notes", "bad\xffutf8"},
		{"no\x00tes", "k"},
		{"not\xfees", "k"},
		{"", "k"},
		{"notes", string(make([]byte, federation.MaxKeyLen+1))},
	} {
		err := n.Put(ctx, c.coll, c.key, []byte("v"))
		require.ErrorIs(t, err, federation.ErrInvalidArgument, "%q/%q", c.coll, c.key)
	}
	require.ErrorIs(t, n.Put(ctx, "notes", "big", make([]byte, federation.MaxValueLen+1)), federation.ErrInvalidArgument)
	require.NoError(t, n.Put(ctx, "notes", "ünïcode key / with spaces", make([]byte, federation.MaxValueLen)))
	require.NoError(t, n.Put(ctx, "notes", "empty value", nil))
}

// TestStrictCollections: with the option, a typo in a collection name is
// an error on writes and reads; without it, it is a new collection.
func TestStrictCollections(t *testing.T) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: t.TempDir(), StrictCollections: true,
		Collections: map[string]federation.Policy{"notes": {}}})
	require.NoError(t, err)
	defer n.Close()
	prof, err := conflict.ProfileSet(nil, "name", "Anna", 1, n.DeviceID())
	require.NoError(t, err)
	err = n.Put(ctx, "Profile", "me", prof)
	require.ErrorIs(t, err, federation.ErrInvalidArgument)
	require.Contains(t, err.Error(), `"Profile"`)
	require.ErrorIs(t, n.Delete(ctx, "Profile", "me"), federation.ErrInvalidArgument)
	_, err = n.Get(ctx, "Profile", "me")
	require.ErrorIs(t, err, federation.ErrInvalidArgument)
	require.ErrorIs(t, n.Scan(ctx, "Profile", federation.KeyRange{}, func(federation.Record) error { return nil }), federation.ErrInvalidArgument)
	require.NoError(t, n.Put(ctx, federation.CollectionProfile, "me", prof), "a standard collection is known")
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("v")), "a configured collection is known")

	loose, err := federation.New(federation.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	defer loose.Close()
	require.NoError(t, loose.Put(ctx, "Profile", "me", prof))
	if _, err := loose.Get(ctx, "Profile", "me"); errors.Is(err, federation.ErrInvalidArgument) {
		t.Fatal("without the option any name is a collection")
	}
}
