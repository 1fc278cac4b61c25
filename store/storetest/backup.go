package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/devicemesh/federation/core"
)

// RunBackup checks a core.BackupStore: a backup taken while another
// goroutine commits is one consistent instant (whole transactions only, a
// changelog that matches the version vector and the records, the metadata),
// the restored store accepts the next commits, and Backup after Close
// fails with ErrClosed. open returns a new, empty store; restore opens
// what Backup wrote (the suite closes both).
func RunBackup(t *testing.T, open func(t *testing.T) core.BackupStore, restore func(t *testing.T, r io.Reader) core.Store) {
	ctx := context.Background()
	st := open(t)
	t.Cleanup(func() { _ = st.Close() })
	if err := st.SetMeta(ctx, "k", []byte("meta value")); err != nil {
		t.Fatal(err)
	}
	const txnLen = 5
	w := newWriter(1)
	txn := func(i int) []op {
		ops := make([]op, txnLen)
		for j := range ops {
			// Keys overlap between transactions, so records and changelog
			// must agree on which transaction came last.
			ops[j] = put("c", fmt.Sprintf("k%03d", (i*3+j)%97), fmt.Sprintf("txn %d op %d", i, j))
		}
		return ops
	}
	for i := range 50 {
		w.commit(t, st, txn(i)...)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	committed := 50
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 50; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := st.Commit(ctx, w.batch(txn(i)...)); err != nil {
				werr = err
				return
			}
			committed = i + 1
		}
	}()
	var buf bytes.Buffer
	err := st.Backup(ctx, &buf)
	close(stop)
	wg.Wait()
	if err != nil || werr != nil {
		t.Fatalf("backup: %v; concurrent commit: %v", err, werr)
	}

	rs := restore(t, &buf)
	t.Cleanup(func() { _ = rs.Close() })
	vv := versionVector(t, rs)
	got := vv[w.origin]
	if got < 50*txnLen || got%txnLen != 0 || got > uint64(committed*txnLen) {
		t.Fatalf("backup holds %d changes: want whole transactions, from %d to %d", got, 50*txnLen, committed*txnLen)
	}
	t.Logf("the backup holds %d of the %d transactions committed by the time it returned", got/txnLen, committed)
	log := changes(t, rs, w.origin, 0, 0)
	if len(log) != int(got) || log[len(log)-1].Seq != got {
		t.Fatalf("backup's changelog has %d changes, its version vector %d", len(log), got)
	}
	last := map[string]core.Change{}
	for _, c := range log {
		last[c.Key] = c
	}
	for k, c := range last {
		requireRecord(t, mustGet(t, rs, "c", k), c.Record)
	}
	if n := len(scanAll(t, rs, "c", core.KeyRange{})); n != len(last) {
		t.Fatalf("backup holds %d records, its changelog %d keys", n, len(last))
	}
	if v, err := rs.Meta(ctx, "k"); err != nil || string(v) != "meta value" {
		t.Fatalf("backup's metadata: %q, %v", v, err)
	}
	// The restored store goes on from where the copy stands.
	w2 := newWriter(1)
	w2.seq, w2.seen[w2.origin] = got, got
	b := w2.commit(t, rs, put("c", "after", "restore"))
	requireRecord(t, mustGet(t, rs, "c", "after"), b.Records[0])

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Backup(ctx, io.Discard); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("backup after close: %v, want ErrClosed", err)
	}
}
