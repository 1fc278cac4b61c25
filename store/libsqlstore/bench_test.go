package libsqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// BenchmarkCommit measures local-write batches of 1,000 records of 1 KiB,
// the shape of the write scenario of cmd/fedbench.
func BenchmarkCommit(b *testing.B) { benchCommit(b, libsqlstore.Options{}) }

// BenchmarkCommitEncrypted is BenchmarkCommit on an encrypted store
// (Options.Key).
func BenchmarkCommitEncrypted(b *testing.B) {
	key := make([]byte, libsqlstore.KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	benchCommit(b, libsqlstore.Options{Key: key})
}

func benchCommit(b *testing.B, opts libsqlstore.Options) {
	st, err := libsqlstore.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	origin := core.DeviceID{1}
	value := make([]byte, 1024)
	const perTxn = 1000
	seq := uint64(0)
	b.SetBytes(perTxn * 1024)
	cpu0 := cpuTime()
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
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*perTxn), "cpu-µs/row")
}

// cpuTime returns the CPU time the process used so far: unlike wall time it
// hardly depends on other load on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRawInsert is the baseline of BenchmarkCommit: the same rows
// inserted with plain go-libsql into a (key, value) table, one transaction
// per 1,000 rows, same WAL and synchronous settings.
func BenchmarkRawInsert(b *testing.B) {
	ctx := context.Background()
	db, err := sql.Open("libsql", "file:"+filepath.Join(b.TempDir(), "raw.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{"PRAGMA synchronous = NORMAL", "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	value := make([]byte, 1024)
	const perTxn = 1000
	n := 0
	b.SetBytes(perTxn * 1024)
	cpu0 := cpuTime()
	for b.Loop() {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		stmt, err := tx.PrepareContext(ctx, "INSERT INTO kv (key, value) VALUES (?, ?)")
		if err != nil {
			b.Fatal(err)
		}
		for range perTxn {
			n++
			if _, err := stmt.ExecContext(ctx, fmt.Sprintf("key-%09d", n), value); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-µs/row")
}

// BenchmarkChanges measures reading the changelog of one origin in order,
// what a sender does in an initial sync: 1 KiB values, written in
// transactions of 1,000.
func BenchmarkChanges(b *testing.B) {
	ctx := context.Background()
	st, err := libsqlstore.Open(ctx, filepath.Join(b.TempDir(), "bench.db"), libsqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	origin := core.DeviceID{1}
	value := make([]byte, 1024)
	const perTxn, total = 1000, 20000
	for seq := uint64(0); seq < total; {
		batch := core.Batch{Changes: make([]core.Change, perTxn), Records: make([]core.Record, perTxn)}
		first := seq + 1
		for j := range perTxn {
			seq++
			r := core.Record{Collection: "bench", Key: fmt.Sprintf("key-%09d", seq), Value: value,
				Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
			batch.Records[j] = r
			batch.Changes[j] = core.Change{Record: r, TxnFirst: first, TxnLen: perTxn}
		}
		if err := st.Commit(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total * 1024)
	cpu0 := cpuTime()
	for b.Loop() {
		n := 0
		err := st.Changes(ctx, origin, 0, 0, func(c core.Change) error {
			n++
			return nil
		})
		if err != nil || n != total {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*total), "cpu-µs/row")
}
