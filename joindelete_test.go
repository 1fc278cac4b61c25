package federation_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/federationtest"
)

// TestJoinDeleteRacingUpdateConverges: in each collection whose merge
// joins values (conversation log, analytics union, embeddings), node 0
// writes A and node 2, apart, writes B; node 1 gets A and deletes the key;
// node 2 then gets A and merges it with B; then everything heals. Every
// device must end with the same record: the deletion removes A, which it
// saw, and not B, which it did not. Before the deletion was written as an
// observed removal, the tombstone merged as the empty state: node 1 held B
// alone and nodes 0 and 2 held A and B, and the re-resolution of equal
// contexts then gave A and B everywhere: the deletion undone (the log and
// union cases failed so; the embeddings case passed, and guards the
// Removed embedding).
func TestJoinDeleteRacingUpdateConverges(t *testing.T) {
	for _, tc := range []struct {
		coll  string
		write func(old []byte, n *federation.Node, what string) ([]byte, error)
		check func(t *testing.T, v []byte)
	}{
		{federation.CollectionConversation, appendMessage, func(t *testing.T, v []byte) {
			l, err := crdt.DecodeLog(v)
			require.NoError(t, err)
			live := map[string]bool{}
			for _, m := range l.Messages() {
				live[m.ID] = !m.Deleted
			}
			require.Equal(t, map[string]bool{"A": false, "B": true}, live, "A deleted, B kept")
		}},
		{federation.CollectionAnalytics, func(old []byte, _ *federation.Node, what string) ([]byte, error) {
			return conflict.EventsAppend(old, []byte(what))
		}, func(t *testing.T, v []byte) {
			evs, err := conflict.Events(v)
			require.NoError(t, err)
			require.Equal(t, [][]byte{[]byte("B")}, evs, "only B survives the deletion")
		}},
		{federation.CollectionEmbeddings, func(_ []byte, _ *federation.Node, what string) ([]byte, error) {
			return conflict.Embedding{Vector: []float32{1, 2}, ContentHash: sha256.Sum256([]byte(what)), Model: "m"}.Encode()
		}, func(t *testing.T, v []byte) {
			e, err := conflict.DecodeEmbedding(v)
			require.NoError(t, err)
			// The deletion and B are concurrent contents: the later one wins
			// (the deletion, made after B, unless both fell in one clock
			// tick); A, which the deletion saw, never comes back.
			require.True(t, e.Removed || e.ContentHash == sha256.Sum256([]byte("B")), "A came back")
		}},
	} {
		t.Run(tc.coll, func(t *testing.T) {
			ctx := context.Background()
			// Analytics travel as written (their default is periodic).
			m := federationtest.NewMesh(t, 3, federationtest.Options{Seed: 1, Config: func(_ int, c *federation.Config) { immediateAnalytics(c) }})
			stop := m.KeepConnected(5 * time.Millisecond)
			t.Cleanup(stop)
			const key = "k"
			write := func(i int, what string) {
				n := m.Node(i)
				require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error {
					old, err := tx.Get(tc.coll, key)
					if err != nil && !errors.Is(err, federation.ErrNotFound) {
						return err
					}
					v, err := tc.write(old, n, what)
					if err != nil {
						return err
					}
					return tx.Put(tc.coll, key, v)
				}))
			}
			// holds waits until node i's version covers node 0's write.
			holds := func(i int) {
				require.Eventually(t, func() bool {
					r, err := m.Node(i).GetRecord(ctx, tc.coll, key)
					return err == nil && r.Context[m.Node(0).DeviceID()] > 0
				}, 10*time.Second, 5*time.Millisecond)
			}
			m.Partition([]int{0}, []int{1}, []int{2})
			write(0, "A")
			write(2, "B")
			m.Partition([]int{0, 1}, []int{2})
			holds(1)
			require.NoError(t, m.Node(1).Delete(ctx, tc.coll, key))
			m.Partition([]int{0, 2}, []int{1})
			holds(2)
			m.Heal()
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			require.NoError(t, m.WaitConverged(wctx))
			var first federation.Record
			for i := range 3 {
				r, err := m.Node(i).GetRecord(ctx, tc.coll, key)
				require.NoError(t, err)
				if i == 0 {
					first = r
					continue
				}
				require.Equal(t, first.Deleted, r.Deleted, "node %d", i)
				require.True(t, bytes.Equal(first.Value, r.Value), "node %d holds another record than node 0:\n%q\n%q", i, r.Value, first.Value)
			}
			require.False(t, first.Deleted)
			tc.check(t, first.Value)
		})
	}
}

func appendMessage(old []byte, n *federation.Node, what string) ([]byte, error) {
	l, err := crdt.DecodeLog(old)
	if err != nil {
		return nil, err
	}
	ts, err := n.Now()
	if err != nil {
		return nil, err
	}
	if err := l.Append(crdt.Message{ID: what, Time: ts, Device: n.DeviceID(), Body: []byte("hello " + what)}); err != nil {
		return nil, err
	}
	return l.Encode(), nil
}
