package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/devicemesh/federation/core"
)

func testTruncate(t *testing.T, st core.Store) {
	a, b := newWriter(1), newWriter(2)
	for i := 0; i < 4; i++ {
		a.commit(t, st, put("c", fmt.Sprintf("a%d", i), "x"), put("c", fmt.Sprintf("a%d", i+100), "y"))
		b.commit(t, st, put("c", fmt.Sprintf("b%d", i), "z"))
	}
	ctx := context.Background()
	vv := versionVector(t, st)
	n, err := st.Truncate(ctx, core.VersionVector{a.origin: 5, b.origin: 1, device(50): 9})
	if err != nil || n != 6 {
		t.Fatalf("truncate = %d, %v; want 6 entries removed", n, err)
	}
	if got := seqs(changes(t, st, a.origin, 0, 0)); !slices.Equal(got, []uint64{6, 7, 8}) {
		t.Fatalf("changes of a after truncate = %v", got)
	}
	if got := seqs(changes(t, st, b.origin, 0, 0)); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Fatalf("changes of b after truncate = %v", got)
	}
	if s := stats(t, st); s.Changes != 6 || s.Records != 12 {
		t.Fatalf("stats after truncate = %+v, want 6 changes and 12 records", s)
	}
	if v := versionVector(t, st); v.Compare(vv) != core.Equal {
		t.Fatalf("truncate changed the version vector: %v -> %v", vv, v)
	}
	if n, err := st.Truncate(ctx, core.VersionVector{a.origin: 5, b.origin: 1}); err != nil || n != 0 {
		t.Fatalf("repeated truncate = %d, %v; want 0", n, err)
	}
	// Acknowledgements beyond the log remove what is there.
	if n, err := st.Truncate(ctx, core.VersionVector{b.origin: 1000}); err != nil || n != 3 {
		t.Fatalf("truncate beyond the log = %d, %v; want 3", n, err)
	}
	// Replaying truncated changes changes nothing; new ones still append.
	old := newWriter(2)
	if err := st.Commit(ctx, old.batch(put("c", "b0", "z"))); err != nil {
		t.Fatalf("replay of a truncated change: %v", err)
	}
	if got := seqs(changes(t, st, b.origin, 0, 0)); len(got) != 0 {
		t.Fatalf("replay of a truncated change re-added %v", got)
	}
	nb := b.commit(t, st, put("c", "b9", "new"))
	if got := seqs(changes(t, st, b.origin, 0, 0)); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("changes of b after a new write = %v", got)
	}
	requireRecord(t, mustGet(t, st, "c", "b9"), nb.Records[0])
	if s := stats(t, st); s.Changes != 4 {
		t.Fatalf("stats.Changes = %d, want 4", s.Changes)
	}
}

func testTruncateKeepsValues(t *testing.T, st core.Store) {
	w := newWriter(1)
	var want []core.Record
	var ops []op
	for i := 0; i < 50; i++ {
		ops = append(ops, put("c", fmt.Sprintf("k%02d", i), fmt.Sprintf("value-%d", i)))
	}
	want = append(want, w.commit(t, st, ops...).Records...)
	over := w.commit(t, st, put("c", "k00", "overwritten"), del("c", "k01"), op{coll: "c", key: "k02", value: []byte{}})
	want[0], want[1], want[2] = over.Records[0], over.Records[1], over.Records[2]
	if n, err := st.Truncate(context.Background(), versionVector(t, st)); err != nil || n != 53 {
		t.Fatalf("truncate everything = %d, %v; want 53", n, err)
	}
	if s := stats(t, st); s.Changes != 0 || s.Records != 49 || s.Tombstones != 1 {
		t.Fatalf("stats after truncating everything = %+v", s)
	}
	// Every current version survives the removal of its changelog entry.
	for _, r := range want {
		requireRecord(t, mustGet(t, st, "c", r.Key), r)
	}
	got := scanAll(t, st, "c", core.KeyRange{IncludeDeleted: true})
	for i, r := range got {
		requireRecord(t, r, want[i])
	}
}

func testMeta(t *testing.T, st core.Store) {
	ctx := context.Background()
	if _, err := st.Meta(ctx, "missing"); !errors.Is(err, core.ErrNotFound) {
		t.Fatalf("missing meta: err = %v, want ErrNotFound", err)
	}
	for _, kv := range []struct{ k, v string }{{"identity", "seed"}, {"identity", "replaced"}, {"k\x00", "\x00\xff"}, {"empty", ""}} {
		if err := st.SetMeta(ctx, kv.k, []byte(kv.v)); err != nil {
			t.Fatal(err)
		}
		got, err := st.Meta(ctx, kv.k)
		if err != nil || !bytes.Equal(got, []byte(kv.v)) {
			t.Fatalf("meta %q = %q, %v; want %q", kv.k, got, err, kv.v)
		}
	}
	got, _ := st.Meta(ctx, "identity")
	got[0] = 'X'
	if again, _ := st.Meta(ctx, "identity"); string(again) != "replaced" {
		t.Fatalf("modifying a returned meta value changed the store: %q", again)
	}
	if s := stats(t, st); s != (core.StoreStats{}) {
		t.Fatalf("metadata counted in stats: %+v", s)
	}
}

func testStats(t *testing.T, st core.Store) {
	if s := stats(t, st); s != (core.StoreStats{}) {
		t.Fatalf("empty store stats = %+v", s)
	}
	a, b := newWriter(1), newWriter(2)
	a.commit(t, st, put("c", "1", "x"), put("c", "2", "x"), put("d", "1", "x"))
	b.commit(t, st, del("c", "2"), del("c", "3"))
	a.commit(t, st, put("c", "1", "y"))
	want := core.StoreStats{Records: 2, Tombstones: 2, Changes: 6}
	if s := stats(t, st); s != want {
		t.Fatalf("stats = %+v, want %+v", s, want)
	}
}

func testCanceled(t *testing.T, st core.Store) {
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := st.Commit(ctx, w.batch(put("c", "b", "2"))); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit with a canceled context: %v", err)
	}
	requireNotFound(t, st, "c", "b")
	if _, err := st.Get(ctx, "c", "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("get with a canceled context: %v", err)
	}
	if err := st.Scan(ctx, "c", core.KeyRange{}, func(core.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("scan with a canceled context: %v", err)
	}
}

func testLargeValues(t *testing.T, st core.Store) {
	w := newWriter(1)
	big := make([]byte, core.MaxValueLen)
	for i := range big {
		big[i] = byte(i*31 + i>>11)
	}
	b := w.commit(t, st, put("media", "big", string(big)), put("media", "small", "s"))
	requireRecord(t, mustGet(t, st, "media", "big"), b.Records[0])
	got := scanAll(t, st, "media", core.KeyRange{})
	if len(got) != 2 {
		t.Fatalf("scan found %d records", len(got))
	}
	requireRecord(t, got[0], b.Records[0])
	cs := changes(t, st, w.origin, 0, 0)
	if len(cs) != 2 || !bytes.Equal(cs[0].Value, big) {
		t.Fatal("changelog lost the large value")
	}
	// Several large values in one batch.
	var ops []op
	for i := 0; i < 6; i++ {
		v := slices.Clone(big[:core.MaxValueLen-i])
		v[0] = byte(i)
		ops = append(ops, op{coll: "media", key: fmt.Sprintf("many%d", i), value: v})
	}
	bb := w.commit(t, st, ops...)
	for _, r := range bb.Records {
		requireRecord(t, mustGet(t, st, "media", r.Key), r)
	}
	if n := len(scanAll(t, st, "media", core.KeyRange{Prefix: "many"})); n != 6 {
		t.Fatalf("scan of large values found %d", n)
	}
}

func testConcurrent(t *testing.T, st core.Store) {
	const writers, txns, perTxn = 4, 25, 4
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*txns+64)
	done := make(chan struct{})
	for wi := 0; wi < writers; wi++ {
		wg.Add(1)
		go func(w *writer) {
			defer wg.Done()
			for i := 0; i < txns; i++ {
				var ops []op
				for j := 0; j < perTxn; j++ {
					k := fmt.Sprintf("w%d-%03d-%d", w.origin[0], i, j)
					ops = append(ops, put("c", k, k))
				}
				if err := st.Commit(ctx, w.batch(ops...)); err != nil {
					errs <- err
					return
				}
			}
		}(newWriter(byte(wi + 1)))
	}
	var readers sync.WaitGroup
	for r := 0; r < 3; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := readOnce(ctx, st); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkConcurrentOutcome(t, st, writers, txns*perTxn)
}

// checkConcurrentOutcome checks that every write of testConcurrent landed.
func checkConcurrentOutcome(t *testing.T, st core.Store, writers, perWriter int) {
	t.Helper()
	if s := stats(t, st); s.Records != int64(writers*perWriter) || s.Changes != int64(writers*perWriter) {
		t.Fatalf("after concurrent writes: %+v", s)
	}
	vv := versionVector(t, st)
	for wi := 0; wi < writers; wi++ {
		if vv[device(byte(wi+1))] != uint64(perWriter) {
			t.Fatalf("version vector %v misses writes", vv)
		}
	}
	for _, r := range scanAll(t, st, "c", core.KeyRange{}) {
		if string(r.Value) != r.Key {
			t.Fatalf("record %q holds %q", r.Key, r.Value)
		}
	}
}

// readOnce exercises every read path and checks what it sees is coherent:
// a record's value is its key, and changes arrive in order.
func readOnce(ctx context.Context, st core.Store) error {
	err := st.Scan(ctx, "c", core.KeyRange{Prefix: "w1"}, func(r core.Record) error {
		if string(r.Value) != r.Key {
			return fmt.Errorf("scan: %q holds %q", r.Key, r.Value)
		}
		return nil
	})
	if err != nil {
		return err
	}
	vv, err := st.VersionVector(ctx)
	if err != nil {
		return err
	}
	for d := range vv {
		prev := uint64(0)
		err := st.Changes(ctx, d, 0, 0, func(c core.Change) error {
			if c.Seq != prev+1 {
				return fmt.Errorf("changes of %s: %d after %d", d.Short(), c.Seq, prev)
			}
			prev = c.Seq
			return nil
		})
		if err != nil {
			return err
		}
	}
	if r, err := st.Get(ctx, "c", "w2-000-0"); err == nil && string(r.Value) != r.Key {
		return fmt.Errorf("get: %q holds %q", r.Key, r.Value)
	} else if err != nil && !errors.Is(err, core.ErrNotFound) {
		return err
	}
	_, err = st.Stats(ctx)
	return err
}

func testClose(t *testing.T, st core.Store) {
	w := newWriter(1)
	w.commit(t, st, put("c", "a", "1"))
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["Get"] = st.Get(ctx, "c", "a")
	checks["Scan"] = st.Scan(ctx, "c", core.KeyRange{}, func(core.Record) error { return nil })
	_, checks["VersionVector"] = st.VersionVector(ctx)
	checks["Changes"] = st.Changes(ctx, w.origin, 0, 0, func(core.Change) error { return nil })
	_, checks["Truncate"] = st.Truncate(ctx, core.VersionVector{w.origin: 1})
	checks["Commit"] = st.Commit(ctx, w.batch(put("c", "b", "2")))
	_, checks["Meta"] = st.Meta(ctx, "k")
	checks["SetMeta"] = st.SetMeta(ctx, "k", []byte("v"))
	_, checks["Stats"] = st.Stats(ctx)
	for name, err := range checks {
		if !errors.Is(err, core.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}
