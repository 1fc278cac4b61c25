package libsqlstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
)

func testDict(n int) (*dictionary, []core.DeviceID) {
	d := newDictionary()
	var ids []core.DeviceID
	for i := 0; i < n; i++ {
		ids = append(ids, core.DeviceID{byte(i + 1), 0xAB})
	}
	if _, _, err := d.add(ids); err != nil {
		panic(err)
	}
	return d, ids
}

func TestContextRoundTrip(t *testing.T) {
	d, ids := testDict(40)
	cases := []core.VersionVector{
		{},
		{ids[0]: 1},
		{ids[3]: 1 << 40, ids[1]: 7, ids[39]: ^uint64(0)},
		{ids[5]: 3, ids[6]: 0}, // zero counters carry no information
	}
	full := core.VersionVector{}
	for i, id := range ids {
		full[id] = uint64(i*i + 1)
	}
	cases = append(cases, full)
	for _, v := range cases {
		b := d.encodeContext(nil, v)
		got, err := d.decodeContext(b)
		if err != nil {
			t.Fatalf("decode %v: %v", v, err)
		}
		if got.Compare(v) != core.Equal {
			t.Fatalf("round trip %v -> %v", v, got)
		}
	}
	if n := len(d.encodeContext(nil, core.VersionVector{ids[0]: 100, ids[1]: 200})); n > 8 {
		t.Fatalf("a two-device context takes %d bytes", n)
	}
}

func TestDecodeContextRejectsCorruption(t *testing.T) {
	d, ids := testDict(3)
	good := d.encodeContext(nil, core.VersionVector{ids[0]: 5, ids[2]: 300})
	bad := map[string][]byte{
		"empty":           {},
		"truncated":       good[:len(good)-1],
		"trailing":        append(append([]byte{}, good...), 0),
		"count too large": {0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1},
		"zero delta":      {2, 1, 1, 0, 1},
		"zero counter":    {1, 1, 0},
		"unknown device":  {1, 9, 1},
		"huge delta":      {2, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1},
		"bad varint":      {1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80},
	}
	for name, b := range bad {
		if _, err := d.decodeContext(b); !errors.Is(err, core.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecodeContext(f *testing.F) {
	d, ids := testDict(5)
	f.Add(d.encodeContext(nil, core.VersionVector{ids[0]: 1, ids[4]: 1 << 33}))
	f.Add([]byte{})
	f.Add([]byte{3, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := d.decodeContext(b)
		if err != nil {
			if !errors.Is(err, core.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := d.decodeContext(d.encodeContext(nil, v))
		if err != nil || again.Compare(v) != core.Equal {
			t.Fatalf("re-encoding %v: %v, %v", v, again, err)
		}
	})
}

// TestMigrateFromVersion1 upgrades a file created by the first schema
// version and checks its data survives.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := openDB(path, Options{BusyTimeout: 1e9, MaxReaders: 1})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if from, to, err := migrate(ctx, conn, migrations()[:1]); err != nil || from != 0 || to != 1 {
		t.Fatalf("migrate to 1: %d -> %d, %v", from, to, err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES (?, ?)", []byte("k"), []byte("v1 data")); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	_ = db.Close()

	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var v int
	if err := st.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("user_version = %d, %v; want %d", v, err, SchemaVersion)
	}
	if got, err := st.Meta(ctx, "k"); err != nil || string(got) != "v1 data" {
		t.Fatalf("data of version 1 after upgrade: %q, %v", got, err)
	}
	if _, err := st.DB().ExecContext(ctx, "INSERT INTO device_registry (device_id, public_key) VALUES (?, ?)", []byte{1}, []byte{2}); err != nil {
		t.Fatalf("table of version 2 missing: %v", err)
	}
}

func TestSchemaVersionMatchesMigrations(t *testing.T) {
	if SchemaVersion != len(migrations()) {
		t.Fatalf("SchemaVersion = %d but there are %d migrations", SchemaVersion, len(migrations()))
	}
}

func TestRowKeyOrder(t *testing.T) {
	// Keys of one collection sort by key, and no other collection's rows
	// fall between them, whatever the bytes.
	colls := []string{"", "a", "a\x00", "ab", "b", string(make([]byte, 200))}
	keys := []string{"", "\x00", "a", "a\xff", "b", "\xff\xff"}
	for _, c := range colls {
		prefix := appendCK(nil, c, "")
		for i, k := range keys {
			ck := appendCK(nil, c, k)
			if gotC, gotK, err := splitCK(ck); err != nil || gotC != c || gotK != k {
				t.Fatalf("split(append(%q, %q)) = %q, %q, %v", c, k, gotC, gotK, err)
			}
			if i > 0 && string(appendCK(nil, c, keys[i-1])) >= string(ck) {
				t.Fatalf("%q/%q does not sort after %q", c, k, keys[i-1])
			}
			for _, o := range colls {
				if o != c && len(appendCK(nil, o, k)) >= len(prefix) && string(appendCK(nil, o, k)[:len(prefix)]) == string(prefix) {
					t.Fatalf("row of collection %q/%q carries the prefix of %q", o, k, c)
				}
			}
		}
	}
}

func FuzzParseRow(f *testing.F) {
	d, ids := testDict(3)
	c := core.Change{Record: core.Record{Timestamp: 77, Context: core.VersionVector{ids[1]: 9}}, TxnFirst: 5, TxnLen: 2}
	f.Add(d.appendChangeMeta(nil, &c))
	f.Add(appendRecordMeta(nil, 5, 2, 9, d.encodeContext(nil, core.VersionVector{ids[2]: 1})))
	f.Add(appendCK(nil, "coll", "key"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		wrapsCorrupt := func(err error) {
			if err != nil && !errors.Is(err, core.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
		}
		if m, err := parseChangeMeta(b); err == nil {
			_, err = d.decodeContext(m.ctx)
			wrapsCorrupt(err)
		} else {
			wrapsCorrupt(err)
		}
		if m, err := parseRecordMeta(b); err == nil {
			_, err = d.decodeContext(m.ctx)
			wrapsCorrupt(err)
		} else {
			wrapsCorrupt(err)
		}
		coll, key, err := splitCK(b)
		wrapsCorrupt(err)
		if err == nil && string(appendCK(nil, coll, key)) != string(b) {
			t.Fatalf("row key %x does not round-trip", b)
		}
	})
}
