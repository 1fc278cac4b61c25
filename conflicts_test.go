package federation_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/federationtest"
)

// TestManualConflictQueue: a conflict left to the host appears on both
// devices, is resolved on one, and disappears on both.
func TestManualConflictQueue(t *testing.T) {
	ctx := context.Background()
	m := federationtest.NewMesh(t, 2, federationtest.Options{Seed: 7, Config: func(i int, c *federation.Config) {
		c.Collections = map[string]federation.Policy{"decisions": {Priority: federation.PriorityHigh, Resolver: conflict.Manual{}}}
	}})
	subs := []*federation.Subscription{
		m.Node(0).Subscribe(federation.SubscribeOptions{}),
		m.Node(1).Subscribe(federation.SubscribeOptions{}),
	}
	require.NoError(t, m.Node(0).Put(ctx, "decisions", "plan", []byte("move to Lisbon")))
	require.NoError(t, m.Node(1).Put(ctx, "decisions", "plan", []byte("stay in Berlin")))
	m.ConnectAll(ctx)

	var ids [2]string
	for i := range 2 {
		require.Eventually(t, func() bool {
			cs, err := m.Node(i).Conflicts(ctx)
			require.NoError(t, err)
			if len(cs) == 1 {
				ids[i] = cs[0].ID
			}
			return len(cs) == 1
		}, 5*time.Second, 5*time.Millisecond, "node %d never queued the conflict", i)
		cs, _ := m.Node(i).Conflicts(ctx)
		require.Equal(t, "plan", cs[0].Key)
		require.NotEqual(t, string(cs[0].Ours.Value), string(cs[0].Theirs.Value))
		// Until the host decides, each device keeps its own version.
		v, err := m.Node(i).Get(ctx, "decisions", "plan")
		require.NoError(t, err)
		require.Equal(t, string(cs[0].Ours.Value), string(v))
		requireEvent(t, subs[i], federation.EventConflict, ids[i])
	}
	require.Equal(t, ids[0], ids[1], "both devices name the conflict alike")

	require.NoError(t, m.Node(1).Resolve(ctx, ids[1], federation.Resolution{Value: []byte("Lisbon, in spring")}))
	require.ErrorIs(t, m.Node(1).Resolve(ctx, ids[1], federation.Resolution{}), federation.ErrNoConflict)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, m.WaitConverged(wctx))
	for i := range 2 {
		cs, err := m.Node(i).Conflicts(ctx)
		require.NoError(t, err)
		require.Empty(t, cs, "node %d still lists the conflict", i)
		v, err := m.Node(i).Get(ctx, "decisions", "plan")
		require.NoError(t, err)
		require.Equal(t, "Lisbon, in spring", string(v))
		requireEvent(t, subs[i], federation.EventResolved, ids[i])
	}
}

// TestConflictQueueSurvivesRestart: the queue is committed with the data.
func TestConflictQueueSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	m := federationtest.NewMesh(t, 2, federationtest.Options{Seed: 8, Config: func(i int, c *federation.Config) {
		c.Collections = map[string]federation.Policy{"decisions": {Resolver: conflict.Manual{}}}
	}})
	require.NoError(t, m.Node(0).Put(ctx, "decisions", "k", []byte("a")))
	require.NoError(t, m.Node(1).Put(ctx, "decisions", "k", []byte("b")))
	m.ConnectAll(ctx)
	require.Eventually(t, func() bool {
		cs, _ := m.Node(0).Conflicts(ctx)
		return len(cs) == 1
	}, 5*time.Second, 5*time.Millisecond)
	m.Restart(0)
	cs, err := m.Node(0).Conflicts(ctx)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.ErrorIs(t, m.Node(0).Put(ctx, "_fed.conflicts", "x", nil), federation.ErrInvalidArgument, "internal collections are reserved")
}

func requireEvent(t *testing.T, s *federation.Subscription, kind federation.EventKind, id string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-s.C:
			if e.Kind == kind && e.ConflictID == id {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event for conflict %s", kind, id)
		}
	}
}

// TestAuditRecordsSync: sessions, batches and the manual conflict's steps
// are in the audit log, and the chain verifies.
func TestAuditRecordsSync(t *testing.T) {
	ctx := context.Background()
	m := federationtest.NewMesh(t, 2, federationtest.Options{Seed: 9, Config: func(i int, c *federation.Config) {
		c.Collections = map[string]federation.Policy{"decisions": {Resolver: conflict.Manual{}}}
	}})
	require.NoError(t, m.Node(0).Put(ctx, "decisions", "k", []byte("a")))
	require.NoError(t, m.Node(1).Put(ctx, "decisions", "k", []byte("b")))
	m.ConnectAll(ctx)
	var id string
	require.Eventually(t, func() bool {
		cs, _ := m.Node(0).Conflicts(ctx)
		if len(cs) == 1 {
			id = cs[0].ID
		}
		return len(cs) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, m.Node(0).Resolve(ctx, id, federation.Resolution{Value: []byte("c")}))
	require.Eventually(t, func() bool {
		cs, _ := m.Node(1).Conflicts(ctx)
		return len(cs) == 0
	}, 5*time.Second, 5*time.Millisecond)
	for i := range 2 {
		log := m.Node(i).Audit()
		require.NoError(t, log.Verify(ctx))
		entries, err := log.Query(ctx, audit.Filter{})
		require.NoError(t, err)
		kinds := map[audit.Kind]int{}
		for _, e := range entries {
			kinds[e.Kind]++
		}
		for _, k := range []audit.Kind{audit.KindSessionOpened, audit.KindBatchSent, audit.KindBatchReceived, audit.KindConflictDetected, audit.KindConflictResolved} {
			require.Positive(t, kinds[k], "node %d audit lacks %v: %v", i, k, kinds)
		}
	}
}

// TestReembedHook: divergent content under one embedding id is merged,
// marked stale, handed to the host's re-embed hook, and the refreshed
// vector clears the flag on every device.
func TestReembedHook(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int64
	m := federationtest.NewMesh(t, 2, federationtest.Options{Seed: 11, Config: func(i int, c *federation.Config) {
		c.Reembed = func(ctx context.Context, coll, key string, stale conflict.Embedding) ([]float32, error) {
			calls.Add(1)
			return []float32{0.25, 0.5, 0.75}, nil
		}
	}})
	for i := range 2 {
		e := conflict.Embedding{Vector: []float32{float32(i), 1, 0}, ContentHash: [32]byte{byte(i + 1)}, Model: "m"}
		b, err := e.Encode()
		require.NoError(t, err)
		require.NoError(t, m.Node(i).Put(ctx, federation.CollectionEmbeddings, "memory", b))
	}
	m.ConnectAll(ctx)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.Eventually(t, func() bool {
		for i := range 2 {
			v, err := m.Node(i).Get(ctx, federation.CollectionEmbeddings, "memory")
			if err != nil {
				return false
			}
			if stale, err := conflict.NeedsReembed(v); err != nil || stale {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "the stale flag was never cleared")
	require.NoError(t, m.WaitConverged(wctx))
	v, err := m.Node(0).Get(ctx, federation.CollectionEmbeddings, "memory")
	require.NoError(t, err)
	e, err := conflict.DecodeEmbedding(v)
	require.NoError(t, err)
	require.Equal(t, []float32{0.25, 0.5, 0.75}, e.Vector)
	require.Positive(t, calls.Load())
}
