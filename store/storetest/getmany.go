package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/devicemesh/federation/core"
)

// testGetMany checks, for stores that offer GetMany (core.ManyGetter, a
// bulk read the sync engine uses when present), that it returns exactly
// what Get returns for every key that exists (values, tombstones,
// metadata), across query chunks, and leaves out absent keys and other
// collections.
func testGetMany(t *testing.T, store core.Store) {
	ctx := context.Background()
	mg, ok := store.(core.ManyGetter)
	if !ok {
		return
	}
	st := store
	var origin core.DeviceID
	origin[0] = 7
	const n = 1200
	b := core.Batch{}
	for i := 0; i < n; i++ {
		coll := "a"
		if i%10 == 9 {
			coll = "b"
		}
		r := core.Record{Collection: coll, Key: fmt.Sprintf("k%05d", i), Value: []byte(fmt.Sprintf("v%d", i)),
			Timestamp: core.MakeTimestamp(1_700_000_000_000, 0), Origin: origin, Seq: uint64(i + 1),
			Context: core.VersionVector{origin: uint64(i + 1)}}
		if i%7 == 3 {
			r.Deleted, r.Value = true, nil
		}
		b.Records = append(b.Records, r)
		b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: 1, TxnLen: n})
	}
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < n+100; i++ {
		keys = append(keys, fmt.Sprintf("k%05d", i)) // the last 100 are absent
	}
	got, err := mg.GetMany(ctx, "a", keys)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, k := range keys {
		r, err := st.Get(ctx, "a", k)
		if err != nil {
			if _, ok := got[k]; ok {
				t.Errorf("GetMany returned %q, which Get does not find (%v)", k, err)
			}
			continue
		}
		want++
		g, ok := got[k]
		if !ok {
			t.Errorf("GetMany lacks %q", k)
			continue
		}
		if !reflect.DeepEqual(g, r) {
			t.Errorf("GetMany %q = %+v, Get = %+v", k, g, r)
		}
	}
	if len(got) != want || want != n-n/10 {
		t.Errorf("GetMany returned %d records, want %d (Get found %d)", len(got), n-n/10, want)
	}
	if got, err := mg.GetMany(ctx, "none", keys[:3]); err != nil || len(got) != 0 {
		t.Errorf("GetMany of a missing collection = %v, %v", got, err)
	}
	if got, err := mg.GetMany(ctx, "a", nil); err != nil || len(got) != 0 {
		t.Errorf("GetMany of no keys = %v, %v", got, err)
	}
}
