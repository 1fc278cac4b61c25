package libsqlstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// advanceLogSize is how many changes TestAdvanceLargeLog commits before
// advancing: small enough for go test -race in CI by default, and set with
// LIBSQLSTORE_ADVANCE_N for a measurement at scale:
//
//	LIBSQLSTORE_ADVANCE_N=200000 go test -run TestAdvanceLargeLog -v ./store/libsqlstore
func advanceLogSize(t *testing.T) int {
	s := os.Getenv("LIBSQLSTORE_ADVANCE_N")
	if s == "" {
		if testing.Short() {
			return 2_000
		}
		return 20_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("LIBSQLSTORE_ADVANCE_N=%q: want a positive integer", s)
	}
	return n
}

// TestAdvanceLargeLog advances an origin whose whole log is still held (every
// record's current version lives in a changelog row, the worst case) past a
// hole as large as the log, and checks that this costs a small fraction of
// committing the log: advancing must not depend on the log's size.
func TestAdvanceLargeLog(t *testing.T) {
	ctx := context.Background()
	n := advanceLogSize(t)
	st := open(t, filepath.Join(t.TempDir(), "advance.db"), libsqlstore.Options{})
	origin := core.DeviceID{7}
	value := make([]byte, 100)
	const perTxn = 1000
	start := time.Now()
	for first := 1; first <= n; first += perTxn {
		ops := make([][3]string, 0, perTxn)
		for seq := first; seq < first+perTxn && seq <= n; seq++ {
			ops = append(ops, [3]string{"c", fmt.Sprintf("k%09d", seq), string(value)})
		}
		if err := st.Commit(ctx, localBatch(origin, uint64(first), nil, ops...)); err != nil {
			t.Fatal(err)
		}
	}
	commitTime := time.Since(start)

	hole := uint64(2 * n)
	start = time.Now()
	if err := st.Commit(ctx, core.Batch{Advance: core.VersionVector{origin: hole}}); err != nil {
		t.Fatalf("advance: %v", err)
	}
	advanceTime := time.Since(start)
	t.Logf("%d changes: commit %v, advance %v (advance/commit = %.5f)",
		n, commitTime.Round(time.Millisecond), advanceTime.Round(time.Microsecond), advanceTime.Seconds()/commitTime.Seconds())

	// What the advance must preserve, on the large log.
	if vv, err := st.VersionVector(ctx); err != nil || vv[origin] != hole {
		t.Fatalf("version vector after advance = %v, %v; want %d", vv, err, hole)
	}
	for _, seq := range []int{1, n / 2, n} {
		r, err := st.Get(ctx, "c", fmt.Sprintf("k%09d", seq))
		if err != nil || r.Seq != uint64(seq) || len(r.Value) != len(value) {
			t.Fatalf("record of change %d after advance: %+v, %v", seq, r, err)
		}
	}
	next := localBatch(origin, hole+1, nil, [3]string{"c", "after", "x"})
	if err := st.Commit(ctx, next); err != nil {
		t.Fatalf("commit after advance: %v", err)
	}
	var got []uint64
	err := st.Changes(ctx, origin, uint64(n-1), 0, func(c core.Change) error {
		got = append(got, c.Seq)
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != uint64(n) || got[1] != hole+1 {
		t.Fatalf("changes across the hole = %v, %v; want [%d %d]", got, err, n, hole+1)
	}
	if s, err := st.Stats(ctx); err != nil || s.Changes != int64(n)+1 {
		t.Fatalf("stats after advance = %+v, %v; want %d changes", s, err, n+1)
	}

	// A regression to emptying the log would cost about as much as
	// committing it; allow generous noise (a WAL checkpoint, -race).
	if n >= 20_000 && advanceTime*10 > commitTime {
		t.Errorf("advance took %v, over a tenth of committing the log (%v): it must not scale with the log", advanceTime, commitTime)
	}
}
