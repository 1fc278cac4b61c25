package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/devicemesh/federation/core"
)

// scanKeys are chosen to catch byte-order and prefix-bound mistakes: NUL
// and 0xff bytes, non-ASCII, the empty key, prefixes of each other.
func scanKeys() []string {
	return []string{"", "a", "a\x00", "ab", "abc", "abd", "ac", "b", "b\xff", "b\xff\xff", "ba", "c", "é", "\xff", "\xff\xff"}
}

// expectScan is the reference model: the live (or all) keys in kr, sorted
// bytewise, cut at the limit.
func expectScan(live, dead []string, kr core.KeyRange) []string {
	all := slices.Clone(live)
	if kr.IncludeDeleted {
		all = append(all, dead...)
	}
	slices.Sort(all)
	var out []string
	for _, k := range all {
		if kr.Contains(k) {
			out = append(out, k)
		}
	}
	if kr.Limit > 0 && len(out) > kr.Limit {
		out = out[:kr.Limit]
	}
	return out
}

func testScanRanges(t *testing.T, st core.Store) {
	w := newWriter(1)
	var ops []op
	for _, k := range scanKeys() {
		ops = append(ops, put("c", k, "v:"+k), put("other", k, "o:"+k))
	}
	ops = append(ops, put("c", "abz", "doomed"), put("c", "\xff\x00", "doomed"))
	w.commit(t, st, ops...)
	dead := []string{"abz", "\xff\x00"}
	w.commit(t, st, del("c", "abz"), del("c", "\xff\x00"))

	checkPinnedScans(t, st)

	ranges := []core.KeyRange{
		{},
		{IncludeDeleted: true},
		{Start: "ab"},
		{End: "b"},
		{Start: "ab", End: "ab"},
		{Start: "b", End: "a"},
		{Start: "a\x00", End: "abd"},
		{Prefix: "a"},
		{Prefix: "ab", IncludeDeleted: true},
		{Prefix: "abc"},
		{Prefix: "zz"},
		{Prefix: "\xff"},
		{Prefix: "\xff\xff"},
		{Prefix: "a", Start: "abc"},
		{Prefix: "a", End: "abd"},
		{Prefix: "a", Start: "b"},
		{Prefix: "b", End: "a"},
		{Limit: 1},
		{Limit: 3, Prefix: "a"},
		{Limit: 100},
		{Limit: 2, Start: "b\xff", IncludeDeleted: true},
		{Start: "é"},
	}
	live := scanKeys()
	for _, kr := range ranges {
		want := expectScan(live, dead, kr)
		got := scanAll(t, st, "c", kr)
		if !slices.Equal(keys(got), want) {
			t.Errorf("scan %s = %q, want %q", fmtRange(kr), keys(got), want)
			continue
		}
		for _, r := range got {
			if !r.Deleted && string(r.Value) != "v:"+r.Key || r.Collection != "c" {
				t.Errorf("scan %s: record %s/%q has value %q", fmtRange(kr), r.Collection, r.Key, r.Value)
			}
		}
	}
}

func testScanPaging(t *testing.T, st core.Store) {
	w := newWriter(1)
	const n = 700
	var all []string
	for i := 0; i < n; i += 100 {
		var ops []op
		for j := i; j < i+100; j++ {
			k := fmt.Sprintf("k%04d", j)
			all = append(all, k)
			ops = append(ops, put("c", k, k))
		}
		w.commit(t, st, ops...)
	}
	// Delete every third key so pages mix live records and tombstones.
	var dels []op
	var live, dead []string
	for i, k := range all {
		if i%3 == 0 {
			dels = append(dels, del("c", k))
			dead = append(dead, k)
		} else {
			live = append(live, k)
		}
	}
	w.commit(t, st, dels...)
	// The callback may read the store while a scan is in progress.
	seen := 0
	err := st.Scan(context.Background(), "c", core.KeyRange{IncludeDeleted: true}, func(r core.Record) error {
		seen++
		got, err := st.Get(context.Background(), "c", r.Key)
		if err != nil {
			return err
		}
		if d := sameRecord(got, r); d != "" {
			return errors.New(d)
		}
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("scan reading the store from its callback: %v after %d of %d records", err, seen, n)
	}
	for _, kr := range []core.KeyRange{{}, {IncludeDeleted: true}, {Limit: 300}, {Start: "k0123", Limit: 257}, {Prefix: "k03", IncludeDeleted: true}} {
		if got, want := keys(scanAll(t, st, "c", kr)), expectScan(live, dead, kr); !slices.Equal(got, want) {
			t.Errorf("scan %+v: got %d keys, want %d (first diff around %v)", kr, len(got), len(want), firstDiff(got, want))
		}
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("#%d %q vs %q", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("length %d vs %d", len(a), len(b))
}

func fmtRange(kr core.KeyRange) string {
	return fmt.Sprintf("{Start:%q End:%q Prefix:%q IncludeDeleted:%v Limit:%d}", kr.Start, kr.End, kr.Prefix, kr.IncludeDeleted, kr.Limit)
}

// checkPinnedScans checks a few hand-computed expectations, which pin the
// reference model itself.
func checkPinnedScans(t *testing.T, st core.Store) {
	t.Helper()
	pinned := []struct {
		kr   core.KeyRange
		want []string
	}{
		{core.KeyRange{Prefix: "ab"}, []string{"ab", "abc", "abd"}},
		{core.KeyRange{Prefix: "b\xff"}, []string{"b\xff", "b\xff\xff"}},
		{core.KeyRange{Start: "ab", End: "b"}, []string{"ab", "abc", "abd", "ac"}},
		{core.KeyRange{Prefix: "\xff", IncludeDeleted: true}, []string{"\xff", "\xff\x00", "\xff\xff"}},
		{core.KeyRange{End: "a"}, []string{""}},
	}
	for _, p := range pinned {
		if got := keys(scanAll(t, st, "c", p.kr)); !slices.Equal(got, p.want) {
			t.Errorf("scan %s = %q, want %q", fmtRange(p.kr), got, p.want)
		}
	}
}
