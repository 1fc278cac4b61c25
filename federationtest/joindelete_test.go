package federationtest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
)

// TestUnionDeleteRacingUpdateConverges is the smallest case found by the
// widened generator (see wideRegressions; fixed by observed removal):
// a join collection (union of events) where a deletion covers one write
// but not a concurrent one. Node 0 writes {a} and node 2, apart, writes
// {e}; node 1 receives {a} and deletes the key; node 2 then receives {a}
// and joins it with {e}. After healing, node 1 holds {e} (the deletion
// removed a, e survives it) while nodes 0 and 2 hold {a, e} (their joined
// value is concurrent with the deletion, which counts as the empty state,
// so a comes back): equal version vectors, different records, and no
// repair can settle it, because the tombstone-as-bottom join of
// conflict.resolveJoin is not consistent with a deletion's causal
// overwrite.
func TestUnionDeleteRacingUpdateConverges(t *testing.T) {
	m := dataMesh(t, 3)
	coll, key := federation.CollectionAnalytics, "day"
	m.Partition([]int{0}, []int{1}, []int{2})
	edit(t, m, 0, coll, key, eventsAppend("a"))
	edit(t, m, 2, coll, key, eventsAppend("e"))
	m.Partition([]int{0, 1}, []int{2})
	waitFor(t, m, 1, coll, key, "a")
	require.NoError(t, m.Node(1).Delete(t.Context(), coll, key))
	m.Partition([]int{0, 2}, []int{1})
	waitFor(t, m, 2, coll, key, "a")
	m.Heal()
	converge(t, m)
	evs, err := conflict.Events(mergedEverywhere(t, m, coll, key))
	require.NoError(t, err)
	require.Len(t, evs, 1, "only e survives: the deletion covered a")
}

// waitFor waits until node i's union value of (coll, key) holds event.
func waitFor(t *testing.T, m interface {
	Node(int) *federation.Node
}, i int, coll, key, event string) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, err := m.Node(i).Get(t.Context(), coll, key)
		if err != nil {
			return false
		}
		evs, err := conflict.Events(v)
		if err != nil {
			return false
		}
		for _, e := range evs {
			if string(e) == event {
				return true
			}
		}
		return false
	}, 10e9, 5e6)
}
