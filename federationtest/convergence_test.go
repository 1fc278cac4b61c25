package federationtest_test

import (
	"os"
	"strconv"
	"testing"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestRandomizedConvergence runs FED_SEEDS seeds (default 200) of the
// widened generator (see widened_test.go) from FED_SEED (default 1), on
// in-memory stores and network: 3 to 5 nodes, random writes of every
// collection's real format, deletes, transactions, frozen and (unless FED_SKEW=0)
// skewed clocks, delete/update races, re-creations, occasional 20,000+
// change transactions, partitions, restarts, changelog compactions
// (forcing Merkle repairs) and dropped, duplicated and reordered frames;
// after healing, every node must hold identical records and every
// acknowledged write must be accounted for. Replay one seed with
// FED_SEED=<n> FED_SEEDS=1.
func TestRandomizedConvergence(t *testing.T) {
	total := runWide(t, wideVariant{bigEvery: 40}, envInt("FED_SEEDS", 200))
	if count := envInt("FED_SEEDS", 200); count >= 20 && (total.Dropped == 0 || total.Duplicated == 0 || total.Reordered == 0) {
		t.Fatalf("the run injected too few faults to mean anything: %+v", total)
	}
}
