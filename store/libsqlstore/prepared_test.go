package libsqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devicemesh/federation/core"
)

// Batches larger than one multi-row INSERT go through the statement kept
// prepared, executed again and again with new values: every change and
// record lands, tombstones included, in the writer's transactions (they
// survive a reopen), and the path really was taken.
// Both kinds of statement are checked: SQLite's own on the writer's
// handle (the normal path), and libSQL's (the fallback).
func TestPreparedInsertsLand(t *testing.T) {
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) { testPreparedInsertsLand(t, own) })
	}
}

func testPreparedInsertsLand(t *testing.T, own bool) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "prep.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.prep.noRaw = !own
	origin := core.DeviceIDFromKey(core.PublicKey{7})
	const txns, perTxn = 5, 2*rowsPerInsert + 13
	want := map[string]core.Record{}
	seq := uint64(0)
	for i := 0; i < txns; i++ {
		var b core.Batch
		first := seq + 1
		for j := 0; j < perTxn; j++ {
			seq++
			r := core.Record{Collection: "c", Key: fmt.Sprintf("k%06d", seq%300), Value: bytes.Repeat([]byte{byte(seq)}, int(seq%700)),
				Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
			if seq%11 == 0 {
				r.Deleted, r.Value = true, nil
			}
			b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: first, TxnLen: perTxn})
			b.Records = append(b.Records, r)
			want[r.Key] = r
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	switch {
	case st.noPrep:
		t.Fatal("prepared path turned off")
	case own && (st.prep.db == nil || len(st.prep.raw) != 1 || len(st.prep.stmts) != 0):
		t.Fatalf("own statements not taken: handle %v, %d own, %d libSQL statements", st.prep.db != nil, len(st.prep.raw), len(st.prep.stmts))
	case !own && (st.prep.db != nil || len(st.prep.raw) != 0 || len(st.prep.stmts) != 1):
		t.Fatalf("libSQL statements not taken: handle %v, %d own, %d libSQL statements", st.prep.db != nil, len(st.prep.raw), len(st.prep.stmts))
	}
	check := func(st *Store) {
		t.Helper()
		n := 0
		err := st.Changes(ctx, origin, 0, 0, func(c core.Change) error {
			n++
			if c.Seq != uint64(n) || c.Deleted != (c.Seq%11 == 0) || (!c.Deleted && !bytes.Equal(c.Value, bytes.Repeat([]byte{byte(c.Seq)}, int(c.Seq%700)))) {
				return fmt.Errorf("change %d: deleted %v, %d bytes", c.Seq, c.Deleted, len(c.Value))
			}
			return nil
		})
		if err != nil || n != txns*perTxn {
			t.Fatalf("changes: %d of %d: %v", n, txns*perTxn, err)
		}
		got := 0
		err = st.Scan(ctx, "c", core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
			got++
			w := want[r.Key]
			if r.Seq != w.Seq || r.Deleted != w.Deleted || !bytes.Equal(r.Value, w.Value) {
				return fmt.Errorf("record %s: seq %d, want %d", r.Key, r.Seq, w.Seq)
			}
			return nil
		})
		if err != nil || got != len(want) {
			t.Fatalf("records: %d of %d: %v", got, len(want), err)
		}
	}
	check(st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if len(st.prep.stmts) != 0 || len(st.prep.raw) != 0 || st.prep.db != nil {
		t.Fatalf("%d libSQL and %d own statements left after Close", len(st.prep.stmts), len(st.prep.raw))
	}
	st, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check(st)
}

// A driver connection of another shape is refused, not read.
func TestNativeConnRefusesOtherShapes(t *testing.T) {
	type other struct{ nativePtr int }
	for _, dc := range []any{nil, 3, &struct{}{}, &other{1}} {
		if _, err := nativeConn(dc); !errors.Is(err, errNoNativeConn) {
			t.Errorf("%T: %v", dc, err)
		}
	}
}

// A failed execution (here a constraint violation) leaves the cache usable:
// the next execution of the same statement succeeds.
// Both kinds of statement, and the error names SQLite's reason.
func TestPreparedRecoversFromFailure(t *testing.T) {
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) { testPreparedRecoversFromFailure(t, own) })
	}
}

func testPreparedRecoversFromFailure(t *testing.T, own bool) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "prep.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.prep.noRaw = !own
	const q = "INSERT INTO meta (key, value) VALUES (?, ?)"
	exec := func(k string) error { return st.prep.exec(st.w, q, []any{[]byte(k), []byte("v-" + k)}) }
	if err := exec("a"); err != nil {
		t.Fatal(err)
	}
	if (st.prep.db != nil) != own {
		t.Fatalf("own statements: %v, want %v", st.prep.db != nil, own)
	}
	if err := exec("a"); err == nil || !strings.Contains(err.Error(), "UNIQUE constraint failed") {
		t.Fatalf("duplicate key: %v", err)
	}
	if err := exec("b"); err != nil {
		t.Fatalf("after a failure: %v", err)
	}
	var n int
	if err := st.w.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key IN (x'61', x'62')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows: %v", n, err)
	}
}

// The function that gives the writer its SQLite handle answers direct
// calls only: a view or trigger of the file (the schema of a hostile file)
// cannot call it (SQLite trusts TEMP ones: they are the host's own). The
// handle it gives is the writer's own: a row inserted through it is seen
// by the writer's transaction before it commits.
func TestConnHandleDirectOnly(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "h.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var h int64
	if err := st.w.QueryRowContext(ctx, "SELECT fed_conn_handle()").Scan(&h); err != nil || h == 0 {
		t.Fatalf("direct call: %d, %v", h, err)
	}
	if _, err := st.w.ExecContext(ctx, "CREATE VIEW hv AS SELECT fed_conn_handle() AS h"); err != nil {
		t.Fatal(err)
	}
	if err := st.w.QueryRowContext(ctx, "SELECT h FROM hv").Scan(&h); err == nil {
		t.Fatal("called from a view")
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if _, err := st.w.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const q = "INSERT INTO meta (key, value) VALUES (?, ?)"
	if err := st.prep.exec(st.w, q, []any{[]byte("seen"), []byte("v")}); err != nil || st.prep.db == nil {
		t.Fatalf("own statement: handle %v, %v", st.prep.db != nil, err)
	}
	var n int
	if err := st.w.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = x'7365656e'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("inside the transaction: %d rows, %v", n, err)
	}
	if _, err := st.w.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := st.w.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key = x'7365656e'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("after rollback: %d rows, %v", n, err)
	}
}
