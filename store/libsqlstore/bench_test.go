package libsqlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// BenchmarkCommit measures local-write batches of 1,000 records of 1 KiB,
// the shape of the write scenario of cmd/fedbench.
func BenchmarkCommit(b *testing.B) {
	st, err := libsqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), libsqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	origin := core.DeviceID{1}
	value := make([]byte, 1024)
	const perTxn = 1000
	seq := uint64(0)
	b.SetBytes(perTxn * 1024)
	for i := 0; b.Loop(); i++ {
		batch := core.Batch{Changes: make([]core.Change, perTxn), Records: make([]core.Record, perTxn)}
		first := seq + 1
		for j := range perTxn {
			seq++
			r := core.Record{Collection: "bench", Key: fmt.Sprintf("key-%09d", seq), Value: value,
				Timestamp: core.Timestamp(i), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
			batch.Records[j] = r
			batch.Changes[j] = core.Change{Record: r, TxnFirst: first, TxnLen: perTxn}
		}
		if err := st.Commit(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perTxn)/b.Elapsed().Seconds(), "rows/s")
}
