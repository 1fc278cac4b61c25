package libsqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

func open(t *testing.T, path string, opts libsqlstore.Options) *libsqlstore.Store {
	t.Helper()
	st, err := libsqlstore.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// localBatch builds a local transaction of origin starting at seq first.
func localBatch(origin core.DeviceID, first uint64, seen core.VersionVector, ops ...[3]string) core.Batch {
	var b core.Batch
	for i, o := range ops {
		seq := first + uint64(i)
		cctx := seen.Clone()
		cctx[origin] = seq
		r := core.Record{Collection: o[0], Key: o[1], Timestamp: core.Timestamp(1000 + seq), Origin: origin, Seq: seq, Context: cctx}
		if o[2] == "<del>" {
			r.Deleted = true
		} else {
			r.Value = []byte(o[2])
		}
		b.Records = append(b.Records, r)
		b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: first, TxnLen: uint32(len(ops))})
	}
	return b
}

// snapshot is everything a store exposes, for comparing across reopen.
type snapshot struct {
	records map[string]core.Record
	changes map[core.DeviceID][]core.Change
	vv      core.VersionVector
	stats   core.StoreStats
	meta    []byte
}

func takeSnapshot(t *testing.T, st core.Store, origins []core.DeviceID) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{records: map[string]core.Record{}, changes: map[core.DeviceID][]core.Change{}}
	for _, coll := range []string{"a", "b"} {
		err := st.Scan(ctx, coll, core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
			s.records[coll+"/"+r.Key] = r
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range origins {
		err := st.Changes(ctx, o, 0, 0, func(c core.Change) error {
			s.changes[o] = append(s.changes[o], c)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if s.vv, err = st.VersionVector(ctx); err != nil {
		t.Fatal(err)
	}
	if s.stats, err = st.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if s.meta, err = st.Meta(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	return s
}

func sameRecord(a, b core.Record) bool {
	return a.Collection == b.Collection && a.Key == b.Key && a.Deleted == b.Deleted && bytes.Equal(a.Value, b.Value) &&
		a.Timestamp == b.Timestamp && a.Origin == b.Origin && a.Seq == b.Seq && a.Context.Compare(b.Context) == core.Equal
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	st := open(t, path, libsqlstore.Options{})
	x, y := core.DeviceID{1, 1}, core.DeviceID{2, 2}
	b1 := localBatch(x, 1, core.VersionVector{}, [3]string{"a", "k1", "one"}, [3]string{"a", "k2", "two"}, [3]string{"b", "k1", "bee"})
	b2 := localBatch(y, 1, core.VersionVector{x: 3}, [3]string{"a", "k1", "<del>"}, [3]string{"a", "k3", ""})
	b3 := localBatch(x, 4, core.VersionVector{y: 2}, [3]string{"a", "k2", "two again"}, [3]string{"b", "k\x00", "nul"})
	for _, b := range []core.Batch{b1, b2, b3} {
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetMeta(ctx, "m", []byte("meta value")); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Truncate(ctx, core.VersionVector{x: 2}); err != nil || n != 2 {
		t.Fatalf("truncate: %d, %v", n, err)
	}
	before := takeSnapshot(t, st, []core.DeviceID{x, y})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, path, libsqlstore.Options{})
	after := takeSnapshot(t, st, []core.DeviceID{x, y})
	if len(after.records) != 5 {
		t.Fatalf("%d records after reopen, want 5", len(after.records))
	}
	compareSnapshots(t, before, after)
	// The reopened store refuses replays and continues sequences.
	if err := st.Commit(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.Get(ctx, "a", "k2"); string(r.Value) != "two again" {
		t.Fatalf("replay after reopen rolled k2 back to %q", r.Value)
	}
	if err := st.Commit(ctx, localBatch(x, 7, core.VersionVector{}, [3]string{"a", "k9", "nine"})); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("gap after reopen: %v", err)
	}
	if err := st.Commit(ctx, localBatch(x, 6, core.VersionVector{}, [3]string{"a", "k9", "nine"})); err != nil {
		t.Fatal(err)
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	want := []string{"audit", "changelog", "conflicts", "device_registry", "devices", "meta", "records", "vv"}
	for i := 0; i < 3; i++ {
		st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		var v int
		if err := st.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != libsqlstore.SchemaVersion {
			t.Fatalf("open #%d: user_version %d, %v", i+1, v, err)
		}
		tables := tableNames(t, st.DB())
		if !slices.Equal(tables, want) {
			t.Fatalf("open #%d: tables %q, want %q", i+1, tables, want)
		}
		if err := st.SetMeta(ctx, fmt.Sprint(i), []byte("kept")); err != nil {
			t.Fatal(err)
		}
		for j := 0; j <= i; j++ {
			if _, err := st.Meta(ctx, fmt.Sprint(j)); err != nil {
				t.Fatalf("open #%d lost data of open #%d: %v", i+1, j+1, err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func tableNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	st := open(t, path, libsqlstore.Options{})
	if _, err := st.DB().ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", libsqlstore.SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{}); !errors.Is(err, core.ErrVersionMismatch) {
		if err == nil {
			_ = st.Close()
		}
		t.Fatalf("open of a newer schema: err = %v, want ErrVersionMismatch", err)
	}
}

func TestCorruptContextIsReported(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	x := core.DeviceID{7}
	if err := st.Commit(ctx, localBatch(x, 1, core.VersionVector{}, [3]string{"a", "k", "v"}, [3]string{"a", "l", "w"})); err != nil {
		t.Fatal(err)
	}
	// Change metadata is uvarint timestamp, transaction first and length,
	// then the context: uvarint count, (index delta, counter) pairs.
	for _, garbage := range [][]byte{{0x05, 0xff}, {1, 1, 1, 1, 99, 1}, {}, {1, 1, 1, 1, 1, 1, 7}, {1, 1, 1, 3, 1}} {
		if _, err := st.DB().ExecContext(ctx, "UPDATE changelog SET meta = ? WHERE id & 1099511627775 = 1", garbage); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "a", "k"); !errors.Is(err, core.ErrCorrupt) {
			t.Fatalf("get with context %x: err = %v, want ErrCorrupt", garbage, err)
		}
		if err := st.Scan(ctx, "a", core.KeyRange{}, func(core.Record) error { return nil }); !errors.Is(err, core.ErrCorrupt) {
			t.Fatalf("scan with context %x: err = %v, want ErrCorrupt", garbage, err)
		}
		if err := st.Changes(ctx, x, 0, 0, func(core.Change) error { return nil }); !errors.Is(err, core.ErrCorrupt) {
			t.Fatalf("changes with context %x: err = %v, want ErrCorrupt", garbage, err)
		}
	}
	// The intact record is still readable.
	if r, err := st.Get(ctx, "a", "l"); err != nil || string(r.Value) != "w" {
		t.Fatalf("intact record: %q, %v", r.Value, err)
	}
	// A record whose changelog row vanished is reported, not invented.
	if _, err := st.DB().ExecContext(ctx, "DELETE FROM changelog WHERE id & 1099511627775 = 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "a", "l"); !errors.Is(err, core.ErrCorrupt) {
		t.Fatalf("get of a record without its changelog row: err = %v, want ErrCorrupt", err)
	}
}

// TestValueStoredOnce checks the layout promise: a local write keeps its
// value only in the changelog, and Truncate moves it to the record.
func TestValueStoredOnce(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	x := core.DeviceID{3}
	var ops [][3]string
	for i := 0; i < 100; i++ {
		ops = append(ops, [3]string{"a", fmt.Sprintf("k%03d", i), string(bytes.Repeat([]byte{byte(i)}, 1024))})
	}
	if err := st.Commit(ctx, localBatch(x, 1, core.VersionVector{}, ops...)); err != nil {
		t.Fatal(err)
	}
	inRecords := func() int64 {
		var n int64
		if err := st.DB().QueryRowContext(ctx, "SELECT coalesce(sum(length(value)), 0) FROM records").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := inRecords(); n != 0 {
		t.Fatalf("records hold %d value bytes next to the changelog", n)
	}
	if _, err := st.Truncate(ctx, core.VersionVector{x: 100}); err != nil {
		t.Fatal(err)
	}
	if n := inRecords(); n != 100*1024 {
		t.Fatalf("after truncate records hold %d value bytes, want %d", n, 100*1024)
	}
}

func TestPragmasOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	for _, full := range []bool{false, true} {
		st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{FullSync: full})
		want := int64(1) // NORMAL
		if full {
			want = 2 // FULL
		}
		var conns []*sql.Conn
		for i := 0; i < 4; i++ { // distinct pooled connections, held at once
			c, err := st.DB().Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			var syncMode, timeout int64
			if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
				t.Fatal(err)
			}
			if err := c.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil {
				t.Fatal(err)
			}
			if syncMode != want || timeout != 5000 {
				t.Fatalf("connection %d: synchronous=%d busy_timeout=%d; want %d, 5000", i, syncMode, timeout, want)
			}
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
}

// TestForeignWritersWait runs writers of other tables through DB next to
// Commit: busy_timeout on every connection makes them wait, not fail.
func TestForeignWritersWait(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	x := core.DeviceID{4}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				_, err := st.DB().ExecContext(ctx, "INSERT INTO audit (at, kind, prev_hash, hash) VALUES (?, 'test', x'00', x'00')", g*1000+i)
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	for i := 0; i < 30; i++ {
		if err := st.Commit(ctx, localBatch(x, uint64(i+1), core.VersionVector{}, [3]string{"a", fmt.Sprint(i), "v"})); err != nil {
			errs <- err
			break
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM audit").Scan(&n); err != nil || n != 90 {
		t.Fatalf("audit rows = %d, %v; want 90", n, err)
	}
}

func TestWriteTx(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	insert := func(ctx context.Context, c *sql.Conn) error {
		_, err := c.ExecContext(ctx, "INSERT INTO audit (at, kind, prev_hash, hash) VALUES (1, 'x', x'00', x'01')")
		return err
	}
	boom := errors.New("boom")
	if err := st.WriteTx(ctx, func(ctx context.Context, c *sql.Conn) error {
		if err := insert(ctx, c); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("WriteTx returned %v, want fn's error", err)
	}
	if err := st.WriteTx(ctx, insert); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM audit").Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit rows = %d, %v; want only the committed one", n, err)
	}
	_ = st.Close()
	if err := st.WriteTx(ctx, insert); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("WriteTx after Close: %v", err)
	}
	if err := st.IntegrityCheck(ctx); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("IntegrityCheck after Close: %v", err)
	}
}

// TestCorruptInlineRowsAreReported corrupts versions stored inline (after
// truncation) and changelog row keys.
func TestCorruptInlineRowsAreReported(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	x := core.DeviceID{8}
	if err := st.Commit(ctx, localBatch(x, 1, core.VersionVector{}, [3]string{"a", "k", "v"}, [3]string{"a", "l", "w"})); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, localBatch(x, 3, core.VersionVector{}, [3]string{"a", "m", "later"})); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Truncate(ctx, core.VersionVector{x: 2}); err != nil || n != 2 {
		t.Fatalf("truncate: %d, %v", n, err)
	}
	// Record metadata: uvarint timestamp, origin index, seq, then context.
	for _, garbage := range [][]byte{{}, {1, 9, 1, 0}, {1, 1, 1}, {1, 1, 1, 1, 1, 1, 0}} {
		if _, err := st.DB().ExecContext(ctx, "UPDATE records SET meta = ? WHERE ref IS NULL AND value = ?", garbage, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "a", "k"); !errors.Is(err, core.ErrCorrupt) {
			t.Fatalf("get with record metadata %x: err = %v, want ErrCorrupt", garbage, err)
		}
	}
	if r, err := st.Get(ctx, "a", "l"); err != nil || string(r.Value) != "w" {
		t.Fatalf("intact inline record: %q, %v", r.Value, err)
	}
	if _, err := st.DB().ExecContext(ctx, "UPDATE changelog SET ck = x'09ff'"); err != nil {
		t.Fatal(err)
	}
	if err := st.Changes(ctx, x, 0, 0, func(core.Change) error { return nil }); !errors.Is(err, core.ErrCorrupt) {
		t.Fatalf("changes with a corrupt row key: err = %v, want ErrCorrupt", err)
	}
}

func compareSnapshots(t *testing.T, before, after snapshot) {
	t.Helper()
	if len(after.records) != len(before.records) {
		t.Fatalf("%d records after reopen, %d before", len(after.records), len(before.records))
	}
	for k, r := range before.records {
		if !sameRecord(after.records[k], r) {
			t.Fatalf("record %q changed across reopen: %+v -> %+v", k, r, after.records[k])
		}
	}
	for o, cs := range before.changes {
		if len(after.changes[o]) != len(cs) {
			t.Fatalf("changes of %s: %d after reopen, %d before", o.Short(), len(after.changes[o]), len(cs))
		}
		for i := range cs {
			a := after.changes[o][i]
			if !sameRecord(a.Record, cs[i].Record) || a.TxnFirst != cs[i].TxnFirst || a.TxnLen != cs[i].TxnLen {
				t.Fatalf("change %d of %s changed across reopen", i, o.Short())
			}
		}
	}
	if after.vv.Compare(before.vv) != core.Equal || after.stats != before.stats || !bytes.Equal(after.meta, before.meta) {
		t.Fatalf("reopen changed vv/stats/meta: %v %+v %q -> %v %+v %q", before.vv, before.stats, before.meta, after.vv, after.stats, after.meta)
	}
}

// TestInlineRecordsKeepFullRange stores versions whose sequence numbers do
// not fit the changelog's packed ids: inline records take any uint64.
func TestInlineRecordsKeepFullRange(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
	x := core.DeviceID{9}
	r := core.Record{Collection: "a", Key: "k", Value: []byte("v"), Timestamp: core.Timestamp(^uint64(0)),
		Origin: x, Seq: ^uint64(0) - 1, Context: core.VersionVector{x: ^uint64(0) - 1}}
	if err := st.Commit(ctx, core.Batch{Records: []core.Record{r}}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, "a", "k")
	if err != nil || !sameRecord(got, r) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, r)
	}
	huge := localBatch(x, 1<<40, core.VersionVector{}, [3]string{"a", "k", "v"})
	if err := st.Commit(ctx, huge); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("change with sequence 2^40: err = %v, want ErrInvalidArgument", err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "store.db")
	st := open(t, path, libsqlstore.Options{})
	if err := st.SetMeta(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s has mode %v: readable by others", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// A new file takes Options.PageSize (16 KiB by default); an existing file
// keeps the page size it was created with; a size SQLite cannot use is
// refused before anything is created.
func TestPageSize(t *testing.T) {
	ctx := context.Background()
	pageSize := func(st *libsqlstore.Store) int {
		t.Helper()
		var n int
		if err := st.DB().QueryRowContext(ctx, "PRAGMA page_size").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	dir := t.TempDir()
	if got := pageSize(open(t, filepath.Join(dir, "default.db"), libsqlstore.Options{})); got != 16384 {
		t.Fatalf("default page size %d, want 16384", got)
	}
	small := filepath.Join(dir, "small.db")
	st := open(t, small, libsqlstore.Options{PageSize: 4096})
	origin := core.DeviceIDFromKey(core.PublicKey{7})
	if err := st.Commit(ctx, localBatch(origin, 1, nil, [3]string{"c", "k", "v"})); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open(t, small, libsqlstore.Options{})
	if got := pageSize(st); got != 4096 {
		t.Fatalf("reopened file has page size %d, want its own 4096", got)
	}
	if r, err := st.Get(ctx, "c", "k"); err != nil || string(r.Value) != "v" {
		t.Fatalf("after reopen: %v %v", r, err)
	}
	for _, bad := range []int{-1, 100, 3000, 1 << 17} {
		path := filepath.Join(dir, fmt.Sprintf("bad%d.db", bad))
		if _, err := libsqlstore.Open(ctx, path, libsqlstore.Options{PageSize: bad}); !errors.Is(err, core.ErrInvalidArgument) {
			t.Fatalf("page size %d: %v, want ErrInvalidArgument", bad, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("page size %d: file created anyway (%v)", bad, err)
		}
	}
}
