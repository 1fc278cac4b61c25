package federation

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
)

// waitEpoch waits until holder holds a head of dev of at least epoch with
// at least seq entries, and returns it.
func waitEpoch(t *testing.T, holder *Node, dev core.DeviceID, epoch, seq uint64) audit.SignedHead {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var h audit.SignedHead
		var ok bool
		holder.locked(func() { h, ok = holder.heldHead(context.Background(), dev) })
		if ok && h.Epoch >= epoch && h.Head.Seq >= seq {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held a head of %s of epoch %d with %d entries (has epoch %d, %d entries)", holder.DeviceID().Short(), dev.Short(), epoch, seq, h.Epoch, h.Head.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noTamper fails if either node detected tampering (counter or event).
func noTamper(t *testing.T, subs map[string]*Subscription, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		if d := n.c.Anchor.Detected(); d != 0 {
			t.Fatalf("%s counted %d audit tamperings: %v", n.DeviceID().Short(), d, n.c.Anchor.Tampered())
		}
	}
	for name, s := range subs {
		for {
			select {
			case e := <-s.C:
				if e.Kind == EventAuditTampered {
					t.Fatalf("%s raised EventAuditTampered for %s: %s", name, e.Origin.Short(), e.Reason)
				}
				continue
			default:
			}
			break
		}
	}
}

// connectPair has a and b trust each other and waits for their session.
func connectPair(t *testing.T, a, b *Node) {
	t.Helper()
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	if err := a.Connect(context.Background(), b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, a, b, 10*time.Second)
}

// restoreAndOpen closes a, restores backup into dir with Restore, checks
// that the restore is declared (RestoredFile), reopens, checks that the
// declaration was recorded and cleared, and connects the node to b.
func restoreAndOpen(t *testing.T, a, b *Node, dir string, backup []byte) *Node {
	t.Helper()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, bytes.NewReader(backup)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); err != nil {
		t.Fatalf("restore not declared: %v", err)
	}
	a = reopenQUIC(t, dir)
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("declaration still there after the open recorded it: %v", err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	connectPair(t, a, b)
	return a
}

// TestRestoreStartsNewAuditEpoch: a device restored with Restore from a
// backup older than the audit heads its peer holds is not reported as
// tampered (on either device): it records the restore, signs a head of a
// new epoch, which reaches the peer, and its later heads anchor again. A
// rewrite of its file after the restore is detected again. Before, the
// peer's head (written after the backup) came back and the device
// reported ErrAuditTampered and stopped signing heads for good.
func TestRestoreStartsNewAuditEpoch(t *testing.T) {
	ctx := context.Background()
	dirA := t.TempDir()
	a, b := quicNode(t, dirA), quicNode(t, t.TempDir())
	subB := b.Subscribe(SubscribeOptions{})
	connectPair(t, a, b)
	appendEntries(t, a, b.DeviceID(), headEvery+5)
	waitHeld(t, b, a.DeviceID(), headEvery)
	var backup bytes.Buffer
	if err := a.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	var atBackup audit.SignedHead
	a.locked(func() { atBackup, _ = a.heldHead(ctx, a.DeviceID()) })
	appendEntries(t, a, b.DeviceID(), 2*headEvery)
	lost := waitHeld(t, b, a.DeviceID(), atBackup.Head.Seq+headEvery)

	a = restoreAndOpen(t, a, b, dirA, backup.Bytes())
	subA := a.Subscribe(SubscribeOptions{})
	es, err := a.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRestored}})
	if err != nil || len(es) != 1 {
		t.Fatalf("restore entries: %d, %v", len(es), err)
	}
	if s, _ := es[0].Detail.Get("seq"); uint64(s.Num) != atBackup.Head.Seq {
		t.Fatalf("restore entry names head %d, want the backup's %d", s.Num, atBackup.Head.Seq)
	}
	first := waitEpoch(t, b, a.DeviceID(), 1, 0)
	if first.Head.Seq >= lost.Head.Seq || first.Prev != atBackup.Head {
		t.Fatalf("first head of the new epoch: %d superseding %d, want below %d superseding the backup's %d", first.Head.Seq, first.Prev.Seq, lost.Head.Seq, atBackup.Head.Seq)
	}
	// Let the peer's older-epoch head reach the device, and both settle.
	time.Sleep(500 * time.Millisecond)
	noTamper(t, map[string]*Subscription{"device": subA, "peer": subB}, a, b)
	if err := a.VerifyAudit(ctx); err != nil {
		t.Fatalf("restored device flagged: %v", err)
	}
	if got := waitEpoch(t, a, a.DeviceID(), 1, 0); got.Epoch != 1 {
		t.Fatalf("device holds its head of epoch %d, want 1", got.Epoch)
	}
	pes, err := b.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRestored}, Device: a.DeviceID()})
	if err != nil || len(pes) == 0 {
		t.Fatalf("peer did not audit the device's restore: %v", err)
	}

	// Heads anchor again.
	appendEntries(t, a, b.DeviceID(), headEvery+5)
	again := waitEpoch(t, b, a.DeviceID(), 1, first.Head.Seq+headEvery)
	noTamper(t, map[string]*Subscription{"device": subA, "peer": subB}, a, b)
	t.Logf("backup head %d, lost head %d (epoch 0), new epoch heads %d then %d", atBackup.Head.Seq, lost.Head.Seq, first.Head.Seq, again.Head.Seq)

	// A rewrite after the restore (its own heads deleted too) is detected
	// again, against the new epoch's head the peer holds.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteAudit(t, dirA, 5, int(again.Head.Seq)-20, true)
	a = reopenQUIC(t, dirA)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	connectPair(t, a, b)
	deadline := time.Now().Add(15 * time.Second)
	for !errors.Is(a.VerifyAudit(ctx), ErrAuditTampered) {
		if time.Now().After(deadline) {
			t.Fatal("rewrite after the restore never detected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSecondRestoreFromOlderBackup: a device restored from a backup B2,
// then from an older backup B1, starts the same epoch number twice; the
// peer holds a head of the first restore's epoch, signed before the second
// restore, and sends it back. The device moves to the next epoch and signs
// again instead of reporting tampering.
func TestSecondRestoreFromOlderBackup(t *testing.T) {
	ctx := context.Background()
	dirA := t.TempDir()
	a, b := quicNode(t, dirA), quicNode(t, t.TempDir())
	subB := b.Subscribe(SubscribeOptions{})
	connectPair(t, a, b)
	appendEntries(t, a, b.DeviceID(), headEvery+5)
	waitHeld(t, b, a.DeviceID(), headEvery)
	var b1, b2 bytes.Buffer
	if err := a.Backup(ctx, &b1); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, a, b.DeviceID(), headEvery)
	waitHeld(t, b, a.DeviceID(), 2*headEvery)
	if err := a.Backup(ctx, &b2); err != nil {
		t.Fatal(err)
	}
	appendEntries(t, a, b.DeviceID(), headEvery)
	waitHeld(t, b, a.DeviceID(), 3*headEvery)

	a = restoreAndOpen(t, a, b, dirA, b2.Bytes())
	waitEpoch(t, b, a.DeviceID(), 1, 0)
	appendEntries(t, a, b.DeviceID(), 2*headEvery)
	e1 := waitEpoch(t, b, a.DeviceID(), 1, 3*headEvery)
	time.Sleep(5 * time.Millisecond) // the next restore is strictly later

	a = restoreAndOpen(t, a, b, dirA, b1.Bytes())
	subA := a.Subscribe(SubscribeOptions{})
	e2 := waitEpoch(t, b, a.DeviceID(), 2, 0)
	time.Sleep(500 * time.Millisecond)
	noTamper(t, map[string]*Subscription{"device": subA, "peer": subB}, a, b)
	if err := a.VerifyAudit(ctx); err != nil {
		t.Fatalf("device flagged after the second restore: %v", err)
	}
	t.Logf("epoch 1 head %d (lost by the second restore), epoch 2 head %d", e1.Head.Seq, e2.Head.Seq)
	appendEntries(t, a, b.DeviceID(), headEvery+5)
	waitEpoch(t, b, a.DeviceID(), 2, e2.Head.Seq+headEvery)
	noTamper(t, map[string]*Subscription{"device": subA, "peer": subB}, a, b)
}

// TestUndeclaredRollbackStillDetected: the device's files copied back by
// hand from an older copy (no Restore, so no declaration) lack the heads
// the peer holds: the device reports ErrAuditTampered once the peer sends
// them back, as before epochs. The same holds for a backup's bytes copied
// over the database by hand.
func TestUndeclaredRollbackStillDetected(t *testing.T) {
	for _, byBackup := range []bool{false, true} {
		name := "folder-copy"
		if byBackup {
			name = "backup-bytes"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dirA, old := t.TempDir(), t.TempDir()
			a, b := quicNode(t, dirA), quicNode(t, t.TempDir())
			connectPair(t, a, b)
			appendEntries(t, a, b.DeviceID(), headEvery+5)
			waitHeld(t, b, a.DeviceID(), headEvery)
			var backup bytes.Buffer
			if byBackup {
				if err := a.Backup(ctx, &backup); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				copyFiles(t, dirA, old)
				a = reopenQUIC(t, dirA)
				if err := a.Start(ctx); err != nil {
					t.Fatal(err)
				}
				connectPair(t, a, b)
			}
			appendEntries(t, a, b.DeviceID(), 2*headEvery)
			waitHeld(t, b, a.DeviceID(), 2*headEvery)
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if byBackup {
				for _, f := range []string{DBFile + "-wal", DBFile + "-shm", DBFile + "-lock"} {
					_ = os.Remove(filepath.Join(dirA, f))
				}
				if err := os.WriteFile(filepath.Join(dirA, DBFile), backup.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				copyFiles(t, old, dirA)
			}
			a = reopenQUIC(t, dirA)
			sub := a.Subscribe(SubscribeOptions{})
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			connectPair(t, a, b)
			select {
			case e := <-waitKind(sub, EventAuditTampered):
				if e.Origin != a.DeviceID() {
					t.Fatalf("tampering reported for %s", e.Origin.Short())
				}
			case <-time.After(15 * time.Second):
				t.Fatal("undeclared rollback never detected")
			}
			if err := a.VerifyAudit(ctx); !errors.Is(err, ErrAuditTampered) {
				t.Fatalf("VerifyAudit = %v", err)
			}
		})
	}
}

// waitKind forwards the first event of kind from s.
func waitKind(s *Subscription, kind EventKind) <-chan Event {
	out := make(chan Event, 1)
	go func() {
		for e := range s.C {
			if e.Kind == kind {
				out <- e
				return
			}
		}
	}()
	return out
}

// copyFiles replaces dst's files with src's regular files.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	old, _ := os.ReadDir(dst)
	for _, e := range old {
		if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		_ = in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// errReader fails after its data, like a backup cut short.
type errReader struct{ data []byte }

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("backup cut short")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestRestoreDeclarationCrashSafe: a Restore that fails before replacing
// the store leaves no declaration; a declaration left next to the
// unchanged store (a crash before the rename) makes the next open declare
// a restore that changed nothing: one extra epoch, audited, no tampering,
// the file removed.
func TestRestoreDeclarationCrashSafe(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := reopenQUIC(t, dir)
	appendEntries(t, n, core.DeviceID{1}, 10)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Restore(dir, &errReader{data: []byte("not a database")}); err == nil {
		t.Fatal("a failing reader restored")
	}
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed restore left a declaration: %v", err)
	}
	n = reopenQUIC(t, dir)
	h, ok := n.heldHead(ctx, n.DeviceID())
	if !ok || h.Epoch != 0 {
		t.Fatalf("head after a failed restore: epoch %d (held %v), want 0", h.Epoch, ok)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := engine.WriteRestoreMarker(filepath.Join(dir, RestoredFile)); err != nil {
		t.Fatal(err)
	}
	n = reopenQUIC(t, dir)
	if h, ok = n.heldHead(ctx, n.DeviceID()); !ok || h.Epoch != 1 {
		t.Fatalf("head after a declared restore: epoch %d (held %v), want 1", h.Epoch, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, RestoredFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("declaration kept: %v", err)
	}
	if err := n.VerifyAudit(ctx); err != nil || n.c.Anchor.Detected() != 0 {
		t.Fatalf("declared restore flagged: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = reopenQUIC(t, dir)
	if err := n.VerifyAudit(ctx); err != nil {
		t.Fatalf("reopen after the restore flagged: %v", err)
	}
	if h, _ = n.heldHead(ctx, n.DeviceID()); h.Epoch != 1 {
		t.Fatalf("epoch after reopen %d, want 1", h.Epoch)
	}
}
