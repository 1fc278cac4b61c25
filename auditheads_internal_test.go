package federation

import (
	"context"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// The anchor's thresholds (internal/anchor), as these tests use them.
const (
	headEvery    = anchor.HeadEvery
	headInterval = anchor.HeadInterval
)

// heldHead returns the signed head of dev that the node's store holds.
func (n *Node) heldHead(ctx context.Context, dev core.DeviceID) (audit.SignedHead, bool) {
	return n.c.Anchor.Held(ctx, dev)
}

// publishHeadLocked signs and commits the node's head (write lock held).
func (n *Node) publishHeadLocked(ctx context.Context) error { return n.c.Anchor.PublishHeadLocked(ctx) }

// appendEntries appends n audit entries to node, as sessions would.
func appendEntries(t *testing.T, node *Node, peer core.DeviceID, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		node.c.Record(context.Background(), audit.Entry{Kind: audit.KindBatchSent, Device: peer, Detail: audit.Detail{audit.Num("changes", int64(i))}})
	}
}

// waitHeld waits until holder holds a head of dev with at least seq
// entries, and returns it.
func waitHeld(t *testing.T, holder *Node, dev core.DeviceID, seq uint64) audit.SignedHead {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var h audit.SignedHead
		var ok bool
		holder.locked(func() { h, ok = holder.heldHead(context.Background(), dev) })
		if ok && h.Head.Seq >= seq {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held a head of %s with %d entries (has %d)", holder.DeviceID().Short(), dev.Short(), seq, h.Head.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rewriteAudit is the attacker with write access to a closed node's file:
// it edits row edit of the audit table, recomputes every later hash with
// the audit package's own hashing (so the rewritten chain verifies), keeps
// only the first keep rows (all with keep < 0) and, with dropHead, also deletes the device's
// stored signed head.
func rewriteAudit(t *testing.T, dir string, edit uint64, keep int, dropHead bool) {
	t.Helper()
	ctx := context.Background()
	st, err := libsqlstore.Open(ctx, filepath.Join(dir, DBFile), libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db := st.DB()
	var es []audit.Entry
	if err := audit.NewSQL(db).Scan(ctx, func(e audit.Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if keep < 0 {
		keep = len(es)
	}
	if len(es) < keep {
		t.Fatalf("only %d audit rows, want to keep %d", len(es), keep)
	}
	es = es[:keep]
	es[edit-1].Detail = audit.Detail{audit.Text("reason", "nothing-happened")}
	es[edit-1].Kind = audit.KindRefusal
	for i := int(edit - 1); i < len(es); i++ {
		if i > 0 {
			es[i].PrevHash = es[i-1].Hash
		}
		es[i].Hash = es[i].ComputeHash()
	}
	exec := func(q string, args ...any) {
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`DELETE FROM audit`)
	for _, e := range es {
		if err := audit.NewSQL(db).Insert(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if dropHead {
		exec(`DELETE FROM records WHERE instr(ck, CAST(? AS BLOB)) > 0`, auditHeadsCollection)
	}
	// The forged chain is consistent: the file alone cannot tell.
	if err := audit.New(audit.NewSQL(db), audit.Options{}).Verify(ctx); err != nil {
		t.Fatalf("forged chain does not verify on its own: %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&n); err != nil || n != keep {
		t.Fatalf("audit rows after rewrite: %d, %v", n, err)
	}
}

// reopenQUIC opens a node on dir again, listening on loopback.
func reopenQUIC(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := New(Config{Dir: dir, Network: NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestAuditRewriteDetectedAfterRestart: a node's audit heads are signed
// and synced to a peer; with the node closed, an attacker rewrites a row of
// its audit table, recomputes every later hash and drops the newest rows,
// so that audit.Log.Verify passes. After a restart the rewrite is detected:
// at open against the node's own stored head, and, when the attacker also
// deleted that, against the head its peer holds once they connect. Before,
// nothing anchored the chain: Verify passed and nothing was reported.
func TestAuditRewriteDetectedAfterRestart(t *testing.T) {
	for _, c := range []struct {
		name     string
		truncate bool
		dropHead bool
	}{{"own-head", true, false}, {"own-head-no-truncation", false, false}, {"peer-head", true, true}} {
		dropHead := c.dropHead
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dirA := t.TempDir()
			a, b := quicNode(t, dirA), quicNode(t, t.TempDir())
			a.TrustDevice(b.PublicKey())
			b.TrustDevice(a.PublicKey())
			if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
				t.Fatal(err)
			}
			waitSession(t, a, b, 5*time.Second)
			appendEntries(t, a, b.DeviceID(), 2*headEvery+10)
			held := waitHeld(t, b, a.DeviceID(), headEvery)
			if err := a.VerifyAudit(ctx); err != nil {
				t.Fatalf("intact chain flagged: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			keep := int(held.Head.Seq) - 40
			if !c.truncate {
				keep = -1
			}
			rewriteAudit(t, dirA, 5, keep, dropHead)

			a = reopenQUIC(t, dirA)
			sub := a.Subscribe(SubscribeOptions{})
			if !dropHead {
				err := a.VerifyAudit(ctx)
				if !errors.Is(err, ErrAuditTampered) || !errors.Is(err, audit.ErrTampered) {
					t.Fatalf("VerifyAudit after rewrite = %v, want ErrAuditTampered", err)
				}
				if st, _ := a.Stats(ctx); st.AuditTampered == 0 {
					t.Fatal("Stats.AuditTampered = 0 after rewrite")
				}
				t.Logf("detected at open: %v", err)
				return
			}
			if err := a.VerifyAudit(ctx); err != nil {
				t.Fatalf("nothing to check against before the peer connects, got %v", err)
			}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(15 * time.Second)
			for {
				select {
				case e := <-sub.C:
					if e.Kind != EventAuditTampered {
						continue
					}
					if e.Origin != a.DeviceID() {
						t.Fatalf("EventAuditTampered names %s, want this device", e.Origin.Short())
					}
					err := a.VerifyAudit(ctx)
					if !errors.Is(err, ErrAuditTampered) {
						t.Fatalf("VerifyAudit after detection = %v", err)
					}
					t.Logf("detected once connected (device %s, peer %s): %v", a.DeviceID().Short(), b.DeviceID().Short(), err)
					// The peer still holds the highest head: the rewritten
					// device did not lower it.
					if got := waitHeld(t, b, a.DeviceID(), held.Head.Seq); audit.CompareHeads(got.Head, held.Head) < 0 {
						t.Fatalf("peer's head of the device lowered: %d, want at least %d", got.Head.Seq, held.Head.Seq)
					}
					return
				case <-deadline:
					t.Fatal("rewrite never detected after the peer connected")
				}
			}
		})
	}
}

// TestRolledBackHeadDoesNotLowerPeers: a device that publishes a head
// lower than the one its peer holds (a truncated chain) does not lower
// what the peer holds; the peer sends the higher head back, and the device
// detects that its chain lacks it.
func TestRolledBackHeadDoesNotLowerPeers(t *testing.T) {
	ctx := context.Background()
	dirA := t.TempDir()
	a, b := quicNode(t, dirA), quicNode(t, t.TempDir())
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, a, b, 5*time.Second)
	appendEntries(t, a, b.DeviceID(), headEvery+5)
	held := waitHeld(t, b, a.DeviceID(), headEvery)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rewriteAudit(t, dirA, 3, int(held.Head.Seq)-100, true)
	a = reopenQUIC(t, dirA)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The rewritten device publishes its (lower) head.
	var err error
	a.locked(func() { err = a.publishHeadLocked(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !errors.Is(a.VerifyAudit(ctx), ErrAuditTampered) {
		if time.Now().After(deadline) {
			t.Fatal("truncation never detected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := waitHeld(t, b, a.DeviceID(), held.Head.Seq); audit.CompareHeads(got.Head, held.Head) < 0 {
		t.Fatalf("peer holds head %d of the device, want at least %d", got.Head.Seq, held.Head.Seq)
	}
}

// TestForgedAuditHeadRefused: a head with a bad signature, or signed by
// another device for this device's id, is refused with the transaction
// that carries it, audited, and not stored. Before, _fed.auditheads did
// not exist and such records were taken as they came.
func TestForgedAuditHeadRefused(t *testing.T) {
	ctx := context.Background()
	a, b := quicNode(t, t.TempDir()), quicNode(t, t.TempDir())
	other, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	self := a.DeviceID()
	good := audit.SignedHead{Key: a.PublicKey(), Head: audit.Head{Seq: 1 << 40}, At: time.Now()}
	good.Sign(a.c.Ident.Sign)
	badSig := good
	badSig.Sig = append([]byte(nil), good.Sig...)
	badSig.Sig[0] ^= 1
	wrongSigner := audit.SignedHead{Key: a.PublicKey(), Head: audit.Head{Seq: 1 << 40}, At: time.Now()}
	wrongSigner.Sign(other.Sign) // claims a's key, signed by another device
	otherKey := audit.SignedHead{Key: other.PublicKey(), Head: audit.Head{Seq: 1 << 40}, At: time.Now()}
	otherKey.Sign(other.Sign) // valid for the other device, keyed by a's id
	cases := map[string]core.Record{
		"bad signature":      {Value: badSig.Marshal()},
		"wrong signer":       {Value: wrongSigner.Marshal()},
		"other device's key": {Value: otherKey.Marshal()},
		"malformed":          {Value: []byte("not a head")},
		"tombstone":          {Deleted: true},
	}
	for name, r := range cases {
		r.Collection, r.Key, r.Origin = auditHeadsCollection, hex.EncodeToString(self[:]), b.DeviceID()
		var err error
		a.locked(func() { err = a.c.CheckOps(ctx, b.DeviceID(), []core.Record{r}) })
		if !errors.Is(err, ErrForgedHead) || !errors.Is(err, core.ErrProtocol) {
			t.Errorf("%s: checkOps = %v, want ErrForgedHead", name, err)
		}
	}
	// A valid head passes the check (and is then found beyond a's chain).
	r := core.Record{Collection: auditHeadsCollection, Key: hex.EncodeToString(self[:]), Value: good.Marshal(), Origin: b.DeviceID()}
	a.locked(func() { err = a.c.CheckOps(ctx, b.DeviceID(), []core.Record{r}) })
	if err != nil {
		t.Fatalf("valid head refused: %v", err)
	}

	// Over the wire: b holds a forged head of a and syncs it; a refuses it.
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	forged := wrongSigner
	forged.Head.Seq = 7
	forged.Sign(other.Sign)
	b.locked(func() {
		err = b.c.Rep.CommitLocked(ctx, []replica.Op{{Collection: auditHeadsCollection, Key: hex.EncodeToString(self[:]), Value: forged.Marshal()}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, err := a.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRefusal}, Device: b.DeviceID()})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range es {
			if f, _ := e.Detail.Get("reason"); f.Text == "forged-audit-head" {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("forged head never refused and audited")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var h audit.SignedHead
	var ok bool
	a.locked(func() { h, ok = a.heldHead(ctx, self) })
	if ok && h.Head.Seq == 7 {
		t.Fatal("forged head stored")
	}
}

// TestIntactAuditNotFlaggedAcrossRestarts: an untampered chain, with heads
// published often, is never reported after many restarts.
func TestIntactAuditNotFlaggedAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	peer := core.DeviceID{1}
	for i := 0; i < 25; i++ {
		n, err := New(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		n.c.Anchor.SetEvery(7)
		appendEntries(t, n, peer, 3+i%11)
		if i%3 == 0 {
			// A write of the host's data: this open writes under a replica, so
			// Close signs a head too.
			if err := n.Put(ctx, "notes", "k", []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.VerifyAudit(ctx); err != nil {
			t.Fatalf("open %d: intact chain flagged: %v", i, err)
		}
		st, err := n.Stats(ctx)
		if err != nil || st.AuditTampered != 0 {
			t.Fatalf("open %d: Stats.AuditTampered = %d, %v", i, st.AuditTampered, err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	held, ok := n.heldHead(ctx, n.DeviceID())
	head, _ := n.Audit().Head(ctx)
	if !ok || held.Head != head {
		t.Fatalf("held head %d (ok %v), log has %d entries: the last Close did not sign the head", held.Head.Seq, ok, head.Seq)
	}
	if err := n.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPeerReportsForkedHead: a peer holding a device's head that receives
// a higher head not extending it (the device's store lost the head it had
// signed, and its chain was rewritten) reports a fork for that device and
// still keeps the highest head.
func TestPeerReportsForkedHead(t *testing.T) {
	ctx := context.Background()
	a, b := pairNode(t, "a", nil), pairNode(t, "b", nil)
	sub := b.Subscribe(SubscribeOptions{})
	self := a.DeviceID()
	key := hex.EncodeToString(self[:])
	held := audit.SignedHead{Key: a.PublicKey(), Head: audit.Head{Seq: 10, Hash: audit.Hash{1}}, At: time.Now()}
	held.Sign(a.c.Ident.Sign)
	b.locked(func() {
		if err := b.c.Rep.CommitLocked(ctx, []replica.Op{{Collection: auditHeadsCollection, Key: key, Value: held.Marshal()}}); err != nil {
			t.Fatal(err)
		}
		fork := audit.SignedHead{Key: a.PublicKey(), Head: audit.Head{Seq: 20, Hash: audit.Hash{3}}, Prev: audit.Head{Seq: 10, Hash: audit.Hash{2}}, At: time.Now()}
		fork.Sign(a.c.Ident.Sign)
		rec := core.Record{Collection: auditHeadsCollection, Key: key, Value: fork.Marshal(), Origin: self}
		if err := b.c.CheckOps(ctx, self, []core.Record{rec}); err != nil {
			t.Fatalf("a validly signed head refused: %v", err)
		}
	})
	if got := b.c.Anchor.Detected(); got != 1 {
		t.Fatalf("detections = %d, want 1", got)
	}
	select {
	case e := <-sub.C:
		if e.Kind != EventAuditTampered || e.Origin != self {
			t.Fatalf("event %v from %s, want audit-tampered for the device", e.Kind, e.Origin.Short())
		}
	case <-time.After(time.Second):
		t.Fatal("no EventAuditTampered")
	}
	es, err := b.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRefusal}, Device: self})
	if err != nil || len(es) == 0 {
		t.Fatalf("fork not audited: %v", err)
	}
	if r, _ := es[len(es)-1].Detail.Get("reason"); r.Text != "audit-head-fork" {
		t.Fatalf("audited %q, want audit-head-fork", r.Text)
	}
}

// TestAuditHeadPublishedAfterInterval: a few entries (fewer than
// headEvery) get a signed head once headInterval has passed on
// Config.Clock.
func TestAuditHeadPublishedAfterInterval(t *testing.T) {
	ctx := context.Background()
	clock := &shiftClock{}
	n, err := New(Config{Dir: t.TempDir(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	appendEntries(t, n, core.DeviceID{1}, 5)
	n.c.Anchor.Wake()
	time.Sleep(100 * time.Millisecond)
	if h, ok := n.heldHead(ctx, n.DeviceID()); ok {
		t.Fatalf("head %d published before the interval", h.Head.Seq)
	}
	clock.advance(headInterval)
	n.c.Anchor.Wake() // as the loop's ticker would
	waitHeld(t, n, n.DeviceID(), 5)
}
