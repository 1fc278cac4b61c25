package libsqlstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// A long run of commits never checkpoints inline, yet the WAL stays
// bounded: the background checkpointer copies it back, and the writer
// restarts it once MaxWALBytes have gone by. Every value stays readable and
// the file passes an integrity check.
func TestCheckpointsKeepWALBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ckpt.db")
	const soft, hard = 256 << 10, 1 << 20
	st, err := Open(ctx, path, Options{CheckpointBytes: soft, MaxWALBytes: hard})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	origin := core.DeviceIDFromKey(core.PublicKey{1})
	value := bytes.Repeat([]byte{0xab}, 1024)
	const txns, perTxn = 128, 128 // 16 MiB of values, about 30 MiB of WAL pages
	seq := uint64(0)
	maxWAL := int64(0)
	for i := 0; i < txns; i++ {
		var b core.Batch
		first := seq + 1
		for j := 0; j < perTxn; j++ {
			seq++
			r := core.Record{Collection: "c", Key: fmt.Sprintf("k%06d", seq), Value: value,
				Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
			b.Records = append(b.Records, r)
			b.Changes = append(b.Changes, core.Change{Record: r, TxnFirst: first, TxnLen: perTxn})
		}
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path + "-wal"); err == nil {
			maxWAL = max(maxWAL, fi.Size())
		}
	}
	// One batch writes about 300 KiB of WAL: the WAL file passes
	// MaxWALBytes by one batch at most, never by the run's 30 MiB.
	if limit := int64(hard + 512<<10); maxWAL > limit {
		t.Fatalf("WAL reached %d bytes, bound %d", maxWAL, limit)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.ckpt.runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st.ckpt.runs.Load() == 0 || st.ckpt.forced.Load() == 0 {
		t.Fatalf("background checkpoints %d, writer checkpoints %d: want both", st.ckpt.runs.Load(), st.ckpt.forced.Load())
	}
	t.Logf("%d MiB committed: WAL peaked at %d KiB; %d background and %d writer checkpoints",
		txns*perTxn*len(value)>>20, maxWAL>>10, st.ckpt.runs.Load(), st.ckpt.forced.Load())
	for _, k := range []string{"k000001", fmt.Sprintf("k%06d", seq/2), fmt.Sprintf("k%06d", seq)} {
		r, err := st.Get(ctx, "c", k)
		if err != nil || !bytes.Equal(r.Value, value) {
			t.Fatalf("get %s: %v", k, err)
		}
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}

// A device that writes one small record at a time still wakes the
// background checkpointer (each commit counts a page at least, not only
// its bytes), which restarts the WAL once it copied all of it back, and
// the pooled connections, on which the audit log and the
// registry append, leave checkpoints to it: their automatic threshold is
// the MaxWALBytes backstop, not SQLite's 1000 pages, so none of their
// appends copies the WAL back inline.
func TestSmallCommitsCheckpointInBackground(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "small.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var pages int
	if err := st.DB().QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if want := defaultMaxWALBytes / defaultPageSize; pages != want {
		t.Fatalf("pooled connections checkpoint automatically at %d pages, want the backstop %d", pages, want)
	}
	origin := core.DeviceIDFromKey(core.PublicKey{1})
	value := make([]byte, 100)
	// A page of 16 KiB a commit: 4 MiB in 256 commits, the last of which
	// wakes the checkpointer (nothing is committed after it, so that its
	// checkpoint copies the whole WAL); the bytes alone (about 300 a
	// commit) would need over 13,000.
	commits := uint64(st.ckpt.softBytes / st.ckpt.minBytes)
	if commits != 256 {
		t.Fatalf("a commit counts %d bytes at least, want a 16 KiB page", st.ckpt.minBytes)
	}
	for seq := uint64(1); seq <= commits; seq++ {
		r := core.Record{Collection: "c", Key: fmt.Sprintf("k%06d", seq), Value: value,
			Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
		if err := st.Commit(ctx, core.Batch{Records: []core.Record{r}, Changes: []core.Change{{Record: r, TxnFirst: seq, TxnLen: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.ckpt.runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if runs := st.ckpt.runs.Load(); runs == 0 {
		t.Fatalf("%d one-record commits woke no background checkpoint", commits)
	}
	if n := st.ckpt.forced.Load(); n != 0 {
		t.Fatalf("the writer checkpointed %d times; want none below MaxWALBytes", n)
	}
	// With no reader in the way, the checkpointer restarted the WAL itself
	// (a write of its own, which fsyncs the new header): the WAL holds that
	// write's frame alone, not the 256 commits', so the host's next commit
	// appends to a WAL already restarted instead of restarting it.
	for st.ckpt.restarts.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var busy, frames, copied int
	if err := st.DB().QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		t.Fatal(err)
	}
	if restarts := st.ckpt.restarts.Load(); restarts == 0 || frames > 2 {
		t.Fatalf("after %d restart writes the WAL holds %d frames; want the restart's alone", restarts, frames)
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}
