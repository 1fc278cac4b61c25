package libsqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
)

// Batches larger than one multi-row INSERT go through the statement kept
// prepared, executed again and again with new values: every change and
// record lands, tombstones included, in the writer's transactions (they
// survive a reopen), and the path really was taken.
func TestPreparedInsertsLand(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "prep.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
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
	if st.noPrep || len(st.prep.stmts) != 1 {
		t.Fatalf("prepared path not taken: noPrep %v, %d statements", st.noPrep, len(st.prep.stmts))
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
	if len(st.prep.stmts) != 0 {
		t.Fatalf("%d statements left after Close", len(st.prep.stmts))
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
func TestPreparedRecoversFromFailure(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "prep.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.wmu.Lock()
	defer st.wmu.Unlock()
	const q = "INSERT INTO meta (key, value) VALUES (?, ?)"
	exec := func(k string) error { return st.prep.exec(st.w, q, []any{[]byte(k), []byte("v-" + k)}) }
	if err := exec("a"); err != nil {
		t.Fatal(err)
	}
	if err := exec("a"); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if err := exec("b"); err != nil {
		t.Fatalf("after a failure: %v", err)
	}
	var n int
	if err := st.w.QueryRowContext(ctx, "SELECT count(*) FROM meta WHERE key IN (x'61', x'62')").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows: %v", n, err)
	}
}
