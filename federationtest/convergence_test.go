package federationtest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/federationtest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestRandomizedConvergence runs FED_SEEDS seeds (default 200) from FED_SEED
// (default 1): 3 to 5 nodes, random writes, deletes and transactions,
// random partitions, restarts, changelog compactions (forcing Merkle
// repairs) and dropped, duplicated and reordered frames;
// after healing, every node must hold identical records. Replay one seed
// with FED_SEED=<n> FED_SEEDS=1.
func TestRandomizedConvergence(t *testing.T) {
	first, count := envInt("FED_SEED", 1), envInt("FED_SEEDS", 200)
	if testing.Short() {
		count = min(count, 20)
	}
	var total federationtest.FaultCounts
	for seed := first; seed < first+count; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			f, err := runSeed(t, uint64(seed))
			if err != nil {
				t.Fatalf("seed %d: %v\nreplay: FED_SEED=%d FED_SEEDS=1 go test ./federationtest -run TestRandomizedConvergence -v", seed, err, seed)
			}
			total.Dropped += f.Dropped
			total.Duplicated += f.Duplicated
			total.Reordered += f.Reordered
		})
	}
	t.Logf("%d seeds from %d run (failures, if any, are listed above); faults injected: %+v", count, first, total)
	if count >= 20 && (total.Dropped == 0 || total.Duplicated == 0 || total.Reordered == 0) {
		t.Fatalf("the run injected too few faults to mean anything: %+v", total)
	}
}

func runSeed(t *testing.T, seed uint64) (federationtest.FaultCounts, error) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := 3 + rng.IntN(3)
	m := federationtest.NewMesh(t, n, federationtest.Options{
		Seed:   seed,
		Faults: federationtest.Faults{Drop: 0.05, Duplicate: 0.05, Reorder: 0.05},
	})
	stop := m.KeepConnected(5 * time.Millisecond)
	defer stop()
	colls := []string{"notes", "tasks", "journal"} // last-writer-wins: values are opaque here
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(16)) }
	steps := 40 + rng.IntN(40)
	for step := 0; step < steps; step++ {
		node := m.Node(rng.IntN(n))
		var err error
		switch x := rng.IntN(100); {
		case x < 40:
			err = node.Put(ctx, colls[rng.IntN(len(colls))], key(), []byte(fmt.Sprintf("v%d-%d", seed, step)))
		case x < 55:
			err = node.Delete(ctx, colls[rng.IntN(len(colls))], key())
		case x < 75:
			err = node.Update(ctx, func(tx *federation.Tx) error {
				for i := 0; i < 2+rng.IntN(5); i++ {
					c := colls[rng.IntN(len(colls))]
					if rng.IntN(4) == 0 {
						if err := tx.Delete(c, key()); err != nil {
							return err
						}
						continue
					}
					if err := tx.Put(c, key(), []byte(fmt.Sprintf("t%d-%d-%d", seed, step, i))); err != nil {
						return err
					}
				}
				return nil
			})
		case x < 83:
			perm := rng.Perm(n)
			cut := 1 + rng.IntN(n-1)
			m.Partition(perm[:cut], perm[cut:])
		case x < 90:
			m.Heal()
		case x < 92:
			m.Restart(rng.IntN(n))
		case x < 95:
			// Compact a node's whole changelog: peers that still lack some
			// of it must be repaired through the Merkle path.
			st := m.Store(rng.IntN(n))
			vv, verr := st.VersionVector(ctx)
			if verr == nil {
				_, err = st.Truncate(ctx, vv)
			}
		default:
			m.SetFaults(rng.IntN(2) == 0)
		}
		if err != nil {
			return m.Injected(), fmt.Errorf("step %d: %w", step, err)
		}
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}
	m.SetFaults(false)
	m.Heal()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := m.WaitConverged(wctx)
	if err != nil {
		if i := strings.Index(err.Error(), "record \""); i >= 0 {
			ck := strings.SplitN(err.Error()[i+8:], "\"", 2)[0]
			if c, k, ok := strings.Cut(ck, "/"); ok {
				t.Log(history(m, c, k))
			}
		}
	}
	return m.Injected(), err
}
