package main

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	// Registers the "libsql" driver for the baseline.
	_ "github.com/tursodatabase/go-libsql"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// writeParams are the flags of the write scenario.
type writeParams struct {
	rows, txn, valueLen, rounds int
	// key, when set, encrypts the node's store (-encrypt).
	key []byte
	// fullSync runs both sides with synchronous=FULL (-fullsync).
	fullSync bool
}

// benchKey returns a random encryption key when encrypt is set, else nil.
func benchKey(encrypt bool) ([]byte, error) {
	if !encrypt {
		return nil, nil
	}
	key := make([]byte, libsqlstore.KeySize)
	if _, err := crand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// runWrite measures Node.Update throughput (txn puts per transaction)
// against raw go-libsql inserts of the same rows into a plain table, one
// transaction per txn rows, with the same WAL and synchronous settings.
// The two are measured alternately, rounds times each, in fresh files; the
// best round of each side counts, so a burst of load on a shared machine
// does not bias the ratio.
func runWrite(ctx context.Context, args []string) (result, error) {
	fs := newFlags("write")
	var p writeParams
	fs.IntVar(&p.rows, "n", 200000, "rows to write per measurement")
	fs.IntVar(&p.txn, "txn", 1000, "rows per transaction")
	fs.IntVar(&p.valueLen, "value", 1024, "value size in bytes")
	fs.IntVar(&p.rounds, "rounds", 3, "measurements of each side (best counts)")
	encrypt := fs.Bool("encrypt", false, "encrypt the node's store (Config.Encryption); the ratio stays against plain raw go-libsql, and an encrypted raw baseline is reported beside it")
	fullSync := fs.Bool("fullsync", false, "run the node with Config.FullSync and the raw baseline with synchronous=FULL (an fsync per commit)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	p.fullSync = *fullSync
	var err error
	if p.key, err = benchKey(*encrypt); err != nil {
		return result{}, err
	}
	if p.rows <= 0 || p.txn <= 0 || p.valueLen < 0 || p.rounds <= 0 {
		return result{}, errors.New("write: -n, -txn and -rounds must be positive, -value not negative")
	}
	keys, values := writeData(p)
	var raws, ours, rawCPU, ourCPU, encRaws []float64
	for r := 0; r < p.rounds; r++ {
		// Alternate which side goes first.
		sides := []func() error{
			func() error {
				v, cpu, err := measureRaw(ctx, p, nil, keys, values)
				raws, rawCPU = append(raws, v), append(rawCPU, cpu)
				return err
			},
			func() error {
				v, cpu, err := measureNode(ctx, p, keys, values)
				ours, ourCPU = append(ours, v), append(ourCPU, cpu)
				return err
			},
		}
		if r%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		if p.key != nil {
			sides = append(sides, func() error {
				v, _, err := measureRaw(ctx, p, p.key, keys, values)
				encRaws = append(encRaws, v)
				return err
			})
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return result{}, err
			}
		}
		progress("write: round %d/%d: raw %.0f rows/s (%.1f µs CPU/row), node %.0f rows/s (%.1f µs CPU/row)",
			r+1, p.rounds, raws[r], rawCPU[r], ours[r], ourCPU[r])
		if p.key != nil {
			progress("write: round %d/%d: encrypted raw %.0f rows/s", r+1, p.rounds, encRaws[r])
		}
	}
	res := result{Scenario: "write", Ours: slices.Max(ours), Baseline: slices.Max(raws), Unit: "rows/s", Target: "ratio >= 0.5"}
	res.Ratio = res.Ours / res.Baseline
	res.Pass = res.Ratio >= 0.5
	// CPU time per row is far less sensitive to other load on the machine
	// than wall time; its ratio is reported alongside.
	res.Extra = map[string]any{
		"rows": p.rows, "txn": p.txn, "value_bytes": p.valueLen,
		"raw_rounds": raws, "node_rounds": ours,
		"raw_cpu_us_per_row": rawCPU, "node_cpu_us_per_row": ourCPU,
		"cpu_ratio": slices.Min(rawCPU) / slices.Min(ourCPU),
		"encrypted": p.key != nil,
		"full_sync": p.fullSync,
	}
	if p.key != nil {
		res.Extra["encrypted_raw_rounds"] = encRaws
		res.Extra["ratio_vs_encrypted_raw"] = res.Ours / slices.Max(encRaws)
	}
	return res, nil
}

// cpuTime returns the CPU time (user + system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rates turns a measurement that started at (start, cpu0) into rows/s and
// CPU µs per row.
func rates(rows int, start time.Time, cpu0 time.Duration) (float64, float64) {
	cpu := cpuTime() - cpu0
	return float64(rows) / time.Since(start).Seconds(), float64(cpu.Microseconds()) / float64(rows)
}

// writeData returns the rows both sides write: distinct keys and
// incompressible values (each a window of one random buffer).
func writeData(p writeParams) ([]string, [][]byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, p.valueLen+4096)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	keys := make([]string, p.rows)
	values := make([][]byte, p.rows)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%09d", i)
		off := rng.IntN(4096)
		values[i] = pool[off : off+p.valueLen]
	}
	return keys, values
}

// measureRaw inserts the rows with plain go-libsql and returns rows/s and
// CPU µs per row; with key, into a file encrypted as the store encrypts
// its own (aes256cbc through PRAGMA hexkey).
func measureRaw(ctx context.Context, p writeParams, key []byte, keys []string, values [][]byte) (float64, float64, error) {
	dir, err := os.MkdirTemp("", "fedbench-raw-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("libsql", "file:"+filepath.Join(dir, "raw.db"))
	if err != nil {
		return 0, 0, fmt.Errorf("raw: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if key != nil {
		for _, q := range []string{"PRAGMA cipher = 'aes256cbc'", "PRAGMA hexkey = '" + hex.EncodeToString(key) + "'"} {
			var ok string
			if err := db.QueryRowContext(ctx, q).Scan(&ok); err != nil {
				return 0, 0, errors.New("raw: set encryption key")
			}
		}
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return 0, 0, fmt.Errorf("raw: %w", err)
	}
	var timeout int64
	if err := db.QueryRowContext(ctx, "PRAGMA busy_timeout = 5000").Scan(&timeout); err != nil {
		return 0, 0, fmt.Errorf("raw: %w", err)
	}
	syncMode := "NORMAL"
	if p.fullSync {
		syncMode = "FULL"
	}
	for _, q := range []string{"PRAGMA synchronous = " + syncMode, "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)"} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return 0, 0, fmt.Errorf("raw: %w", err)
		}
	}
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < p.rows; i += p.txn {
		if err := rawTxn(ctx, db, keys[i:min(i+p.txn, p.rows)], values[i:]); err != nil {
			return 0, 0, fmt.Errorf("raw: %w", err)
		}
	}
	rate, cpu := rates(p.rows, start, cpu0)
	return rate, cpu, nil
}

func rawTxn(ctx context.Context, db *sql.DB, keys []string, values [][]byte) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	stmt, err := tx.PrepareContext(ctx, "INSERT INTO kv (key, value) VALUES (?, ?)")
	if err != nil {
		return err
	}
	for j, k := range keys {
		if _, err := stmt.ExecContext(ctx, k, values[j]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// measureNode writes the rows through a Node, p.txn puts per Update, and
// returns rows/s and CPU µs per row.
func measureNode(ctx context.Context, p writeParams, keys []string, values [][]byte) (float64, float64, error) {
	dir, err := os.MkdirTemp("", "fedbench-node-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	node, err := federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: p.key}, FullSync: p.fullSync})
	if err != nil {
		return 0, 0, fmt.Errorf("node: %w", err)
	}
	defer node.Close()
	start, cpu0 := time.Now(), cpuTime()
	for i := 0; i < p.rows; i += p.txn {
		batch := keys[i:min(i+p.txn, p.rows)]
		err := node.Update(ctx, func(tx *federation.Tx) error {
			for j, k := range batch {
				if err := tx.Put("bench", k, values[i+j]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("node: %w", err)
		}
	}
	rate, cpu := rates(p.rows, start, cpu0)
	return rate, cpu, nil
}
