package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/devicemesh/federation/core"
)

// testCountChanges checks, for stores that count the changelog
// (core.ChangeCounter, the sync progress census), that every range counts
// exactly what reading it with Changes gives: per collection, the changes
// and their collection, key and value bytes, with tombstones, stubs, empty
// values, names of every length up to core.MaxCollectionLen, two origins,
// ranges cut anywhere, and a truncated start.
func testCountChanges(t *testing.T, st core.Store) {
	ctx := context.Background()
	cc, ok := st.(core.ChangeCounter)
	if !ok {
		return
	}
	colls := []string{"a", "conv", strings.Repeat("x", 127), strings.Repeat("y", core.MaxCollectionLen), "é✓", strings.Repeat("z", 126)}
	w, other := newWriter(1), newWriter(2)
	for txn := 0; txn < 12; txn++ {
		var ops []op
		for i := 0; i < 9; i++ {
			coll := colls[(txn+i)%len(colls)]
			key := fmt.Sprintf("k%d-%d%s", txn, i, strings.Repeat("q", (txn*i)%40))
			switch i % 4 {
			case 0:
				ops = append(ops, del(coll, key))
			case 1:
				ops = append(ops, put(coll, key, ""))
			default:
				ops = append(ops, put(coll, key, strings.Repeat("v", 1+txn*97+i*13)))
			}
		}
		b := w.batch(ops...)
		if txn%3 == 1 { // a stub holds no value
			r := &b.Changes[2].Record
			*r = r.AsStub()
			b.Records[2] = *r
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		other.commit(t, st, put(colls[txn%len(colls)], fmt.Sprintf("o%d", txn), "other"))
	}
	last := w.seq
	check := func(origin core.DeviceID, after, upTo uint64) {
		t.Helper()
		var want map[string]core.ChangeTally
		for _, c := range changes(t, st, origin, after, 0) {
			if c.Seq > upTo {
				break
			}
			if want == nil {
				want = map[string]core.ChangeTally{}
			}
			a := want[c.Collection]
			a.Changes++
			a.Bytes += uint64(len(c.Collection) + len(c.Key) + len(c.Value))
			want[c.Collection] = a
		}
		got, err := cc.CountChanges(ctx, origin, after, upTo)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("CountChanges(%s, %d, %d) = %+v, reading gives %+v", origin.Short(), after, upTo, got, want)
		}
	}
	for after := uint64(0); after <= last+1; after += 7 {
		for _, upTo := range []uint64{after, after + 1, after + 13, last, last + 100} {
			check(w.origin, after, upTo)
		}
	}
	check(other.origin, 0, other.seq)
	check(other.origin, 3, 5)
	check(device(9), 0, 100) // an origin the store never saw
	if _, err := st.Truncate(ctx, core.VersionVector{w.origin: 40}); err != nil {
		t.Fatal(err)
	}
	check(w.origin, 0, last)
	check(w.origin, 30, 50)
	check(w.origin, 10, 40) // all of it truncated
}
