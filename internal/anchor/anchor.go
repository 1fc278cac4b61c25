package anchor

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
)

// Anchored audit history.
//
// The audit chain in the device's own file proves that no row was edited in
// place, but whoever can write the file can rewrite a row, recompute every
// later hash and drop the newest rows. So each device signs its audit head
// (entry count, newest hash, the head it supersedes, a time) with its
// device key and replicates it in the internal collection _fed.auditheads,
// keyed by the device id in hex, synced immediately to every trusted
// device. A head is verified on receipt: a bad signature, a key that is not
// the record key's device, a malformed value or a tombstone is refused with
// the transaction that carried it and audited ("forged-audit-head"), like a
// forged registry operation.
//
// Peers keep the highest head of every device (audit.CompareHeads: entry
// count, then hash); concurrent versions resolve to the higher, and a lower
// head that supersedes a higher one (a device rolled back) is committed and
// then overwritten by the peer with the higher head it held, signed by the
// device itself. So a rewritten device can never lower what its peers
// hold, and its peers send the higher head back to it. A peer that receives
// a higher head not extending the one it held (a fork) records
// "audit-head-fork" and raises EventAuditTampered for that device.
//
// A device checks its own chain against the highest signed head of its own
// that it holds: fully (Log.VerifyHead) when the node opens (in the
// background; Node.VerifyAudit does it at once), and (Log.CheckHead)
// before signing a new head and whenever a head of its own arrives from a
// peer. A chain
// that lacks the head or differs at its position is reported as
// ErrTampered: logged as an error, raised as EventAuditTampered,
// counted in Stats.AuditTampered, returned by Node.VerifyAudit; the device
// then stops publishing heads, so that it never signs the rewritten history
// over the evidence its peers hold.
//
// A restore through Restore is declared (RestoredFile) and starts a new
// epoch of heads (declareRestore; audit package doc, "Epochs"): heads are
// ordered by (epoch, count, hash) (audit.CompareSigned), so the peers
// replace the head written after the backup by the new epoch's head
// instead of writing it back, and the device checks only heads of its own
// epoch or newer ones. A newer-epoch or same-epoch head that the chain
// lacks but that was signed before the latest restore entry (a second
// restore from an older backup reused the epoch) moves the device to the
// epoch after it (adoptEpoch); any other is tampering, as before.
//
// Heads are published after HeadEvery new entries, or after HeadInterval
// (Config.Clock) when some entries are unpublished, and at Close when this
// open already writes under a replica (a head alone never mints a replica
// incarnation at Close). What this leaves possible is in the audit package
// doc ("Anchoring").
const (
	// Collection is the internal collection of signed audit heads.
	Collection = replica.InternalPrefix + "auditheads"
	// HeadEvery is the number of new entries after which a head is due.
	HeadEvery = 256
	// HeadInterval is the time after which unpublished entries get a head.
	HeadInterval = 10 * time.Minute
	// HeadTick is how often the head loop looks at the time
	// (Config.Clock's timers).
	HeadTick = time.Minute
)

// ErrTampered reports that this device's audit chain lacks, or differs
// from, a head it signed earlier: its history was rewritten or truncated
// (or restored from an older copy without Restore, which declares a
// restore and starts a new epoch of heads). It wraps audit.ErrTampered.
var ErrTampered = fmt.Errorf("audit history rewritten or truncated: %w", audit.ErrTampered)

// ErrForgedHead reports a _fed.auditheads record that does not hold a
// head validly signed by the device it is keyed by.
var ErrForgedHead = errors.New("forged audit head")

// Anchor is the node's head publishing and tamper state: it owns the
// node's audit log (Record, Log), checks the heads that arrive (CheckHeads),
// publishes this device's heads (Run, AnchorLocked) and verifies its chain
// (Verify). Build it with New; it is safe for concurrent use.
type Anchor struct {
	log    *audit.Log
	rep    Replica
	ident  Signer
	events Events
	sched  core.Scheduler
	logger *slog.Logger
	marker string       // the restore declaration to honour at Open ("": none)
	synced func(string) // makes a directory's entries durable (nil: nothing)

	every    int           // entries between heads (HeadEvery; tests lower it)
	kick     chan struct{} // wakes the head loop (capacity 1)
	detected atomic.Uint64 // tamper detections, for Stats
	refused  refusals      // refusal entries by reason, for Stats (refusals.go)

	mu        sync.Mutex
	last      uint64    // the newest entry appended in this open
	pubSeq    uint64    // the entry count of the last head published (or held at open)
	lastPub   time.Time // when the last head was published (Config.Clock)
	memory    bool      // the audit log lives in memory: no own heads, no own checks
	tampered  error     // the first detection (nil: none); latches publishing off
	republish map[core.DeviceID]audit.SignedHead

	epoch      uint64     // the epoch this device signs its heads in
	resign     bool       // a head of epoch is due even without new entries
	base       audit.Head // the restored backup's head (zero: none): Prev of an epoch's first head
	restoredAt time.Time  // when the latest declared restore was recorded (zero: none)
}

func (a *Anchor) inMemory() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.memory
}

// Wake has the head loop look at once whether a head is due (as its
// timer would).
func (a *Anchor) Wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// noteAudited notes an appended entry and wakes the head loop when a head
// is due.
func (a *Anchor) noteAudited(seq uint64) {
	a.mu.Lock()
	a.last = max(a.last, seq)
	due := a.every > 0 && a.last >= a.pubSeq+uint64(a.every) && a.tampered == nil && !a.memory
	a.mu.Unlock()
	if due {
		a.Wake()
	}
}

// Open reads the highest own head the store holds and the latest declared
// restore, honours a restore declaration (Config.RestoreMarker), and
// returns the head for Run. Call it once, before the node runs. A node
// whose audit log lives in memory (a store without a database) signs no
// heads of its own, since its log restarts empty at every open; it still
// verifies and keeps its peers' heads.
func (a *Anchor) Open(ctx context.Context) audit.SignedHead {
	held, _ := a.Held(ctx, a.self())
	a.pubSeq = held.Head.Seq
	a.epoch = held.Epoch
	a.loadRestorePoint(ctx)
	if a.marker != "" && !a.memory {
		if err := a.declareRestore(ctx, held); err != nil {
			a.logger.Error("record restore from a backup", "err", err)
		}
		held, _ = a.Held(ctx, a.self())
	}
	return held
}

// Run checks the whole chain against held, the highest own head the
// store held at open (in the background: it reads every row, about 8 ms
// per 1,000 entries), then publishes this device's head when due and
// writes back the higher heads of devices whose lower heads arrived, until
// ctx ends (the node closes). Heads may be signed before that check ends:
// each is signed only if the chain holds the head it supersedes (Log.CheckHead),
// and since that head pins the hash at its position, which commits to
// every row before it, a rewrite before it is caught there; a row left
// inconsistent stays visible to Verify whatever is signed after it. It
// looks at the time every HeadTick on Config.Clock's timers.
func (a *Anchor) Run(ctx context.Context, held audit.SignedHead) {
	if a.inMemory() || held.Epoch < a.epochNow() {
		// The log restarted empty, or the head is of an epoch before a
		// declared restore: check the chain only.
		held = audit.SignedHead{}
	}
	err := a.log.VerifyHead(ctx, held.Head)
	if ctx.Err() != nil {
		return
	}
	if err != nil && a.lostByRestore(held) {
		a.adoptEpoch(held.Epoch + 1)
		err = a.log.VerifyHead(ctx, audit.Head{})
	}
	if err != nil {
		a.auditTampered(err, "own stored head")
	}
	tick, release := core.Wait(a.sched, HeadTick)
	defer func() { release() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-tick:
			tick, release = core.Wait(a.sched, HeadTick)
		}
		_ = a.rep.Exclusive(context.Background(), "", func() error {
			if ctx.Err() == nil {
				a.AnchorLocked(context.Background(), false)
			}
			return nil
		})
	}
}

// AnchorLocked writes back held heads and publishes this device's head when
// due (or, with closing, whenever entries are unpublished and a replica is
// in use). Called inside Replica.Exclusive (the write lock held).
func (a *Anchor) AnchorLocked(ctx context.Context, closing bool) {
	a.mu.Lock()
	back := a.republish
	a.republish = nil
	fresh := a.last > a.pubSeq // entries appended here since the last head
	due := fresh && (a.last >= a.pubSeq+uint64(a.every) || a.sched.Now().Sub(a.lastPub) >= HeadInterval)
	if closing {
		due = fresh && !a.rep.Current().IsZero()
	}
	due = due || a.resign
	a.mu.Unlock()
	var ops []replica.Op
	for dev, h := range back {
		if cur, ok := a.Held(ctx, dev); ok && audit.CompareSigned(cur, h) >= 0 {
			continue // already as high
		}
		ops = append(ops, replica.Op{Collection: Collection, Key: hex.EncodeToString(dev[:]), Value: h.Marshal()})
	}
	if len(ops) > 0 {
		if err := a.rep.CommitLocked(ctx, ops); err != nil {
			a.logger.Error("write back audit heads", "err", err)
		}
	}
	if due {
		if err := a.PublishHeadLocked(ctx); err != nil {
			a.logger.Error("publish audit head", "err", err)
		}
	}
}

// PublishHeadLocked signs and commits this device's current audit head,
// superseding the highest own head the store holds, after checking that the
// chain still contains that one (or, for the first head of an epoch, the
// restored backup's head). It does nothing once tampering was detected.
// Called inside Replica.Exclusive (the write lock held).
func (a *Anchor) PublishHeadLocked(ctx context.Context) error {
	a.mu.Lock()
	stop := a.tampered != nil || a.memory
	epoch, base := a.epoch, a.base
	a.mu.Unlock()
	if stop {
		return nil
	}
	head, err := a.log.Head(ctx)
	if err != nil {
		return err
	}
	held, ok := a.Held(ctx, a.self())
	prev := held.Head
	switch {
	case ok && held.Epoch > epoch:
		// A head of a newer epoch than this store knows: signed before a
		// declared restore from an older backup, or the store was rolled
		// back (checkOwnHead decides which when it arrives).
		if !a.lostByRestore(held) {
			a.auditTampered(fmt.Errorf("%w: a signed head of epoch %d, this store is at epoch %d", audit.ErrTampered, held.Epoch, epoch), "own stored head")
			return nil
		}
		a.adoptEpoch(held.Epoch + 1)
		return a.PublishHeadLocked(ctx)
	case ok && held.Epoch < epoch || !ok && epoch > 0:
		// The first head of a new epoch: it supersedes the backup's head.
		if err := a.log.CheckHead(ctx, base); err != nil {
			a.auditTampered(err, "the restored backup's head")
			return nil
		}
		prev = base
	case ok:
		if head.Seq <= held.Head.Seq {
			if head != held.Head {
				a.auditTampered(a.log.CheckHead(ctx, held.Head), "own stored head")
			}
			return nil
		}
		if err := a.log.CheckHead(ctx, held.Head); err != nil {
			a.auditTampered(err, "own stored head")
			return nil
		}
	}
	sh := audit.SignedHead{Key: a.ident.PublicKey(), Epoch: epoch, Head: head, Prev: prev, At: a.sched.Now()}
	sh.Sign(a.ident.Sign)
	self := a.self()
	if err := a.rep.CommitLocked(ctx, []replica.Op{{Collection: Collection, Key: hex.EncodeToString(self[:]), Value: sh.Marshal()}}); err != nil {
		return err
	}
	a.mu.Lock()
	a.pubSeq, a.lastPub = head.Seq, a.sched.Now()
	if a.epoch == epoch {
		a.resign = false
	}
	a.mu.Unlock()
	return nil
}

// Held returns the signed head of dev that the store holds, if any.
func (a *Anchor) Held(ctx context.Context, dev core.DeviceID) (audit.SignedHead, bool) {
	r, err := a.rep.Get(ctx, Collection, hex.EncodeToString(dev[:]))
	if err != nil || r.Deleted {
		return audit.SignedHead{}, false
	}
	h, err := audit.UnmarshalHead(r.Value)
	if err != nil {
		return audit.SignedHead{}, false
	}
	return h, true
}

// decodeHeadRecord checks an incoming _fed.auditheads record: a
// well-formed head, validly signed by the device its key names.
func decodeHeadRecord(r core.Record) (audit.SignedHead, error) {
	if r.Deleted {
		return audit.SignedHead{}, fmt.Errorf("%w: tombstone", ErrForgedHead)
	}
	h, err := audit.UnmarshalHead(r.Value)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrForgedHead, err)
	}
	if dev := h.Device(); hex.EncodeToString(dev[:]) != r.Key {
		return h, fmt.Errorf("%w: signed by %s, keyed by another device", ErrForgedHead, dev.Short())
	}
	if err := h.Verify(); err != nil {
		return h, fmt.Errorf("%w: %w", ErrForgedHead, err)
	}
	return h, nil
}

// CheckHeads is the ingress check for audit heads arriving from a peer
// (from: their origin), with the write lock held (the commit pipeline's
// check), before they are committed. A forged head refuses the whole
// transaction (an error wrapping core.ErrProtocol and ErrForgedHead). A
// head of this device is checked against the chain; a head lower than the
// one held, or one that forks from it, is noted (see the comment at the
// top of this file).
func (a *Anchor) CheckHeads(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	for _, r := range recs {
		if r.Collection != Collection {
			continue
		}
		h, err := decodeHeadRecord(r)
		if err != nil {
			a.Record(ctx, audit.Refusal(a.rep.OriginDevice(from), "forged-audit-head"))
			return fmt.Errorf("%w: %w", core.ErrProtocol, err)
		}
		dev := h.Device()
		if dev == a.self() && !a.inMemory() {
			a.checkOwnHead(ctx, h)
		}
		held, ok := a.Held(ctx, dev)
		switch {
		case !ok || audit.CompareSigned(h, held) == 0:
		case audit.CompareSigned(h, held) < 0:
			if h.Epoch == held.Epoch {
				a.Record(ctx, audit.Refusal(dev, "audit-head-rollback"))
			} // else a head from before a declared restore, superseded
			a.mu.Lock()
			if a.republish == nil {
				a.republish = map[core.DeviceID]audit.SignedHead{}
			}
			if cur, ok := a.republish[dev]; !ok || audit.CompareSigned(cur, held) < 0 {
				a.republish[dev] = held
			}
			a.mu.Unlock()
			a.Wake()
		case !audit.Extends(held, h) && dev != a.self():
			a.detected.Add(1)
			a.Record(ctx, audit.Refusal(dev, "audit-head-fork"))
			a.logger.Error("audit history of a device forked", "peer", dev.Short(), "held", held.Head.Seq, "received", h.Head.Seq)
			a.events.Tampered(dev, "audit head forks from the one held")
		case h.Epoch > held.Epoch && dev != a.self():
			// The device declared a restore: the entries it wrote after
			// its backup are gone by design. Audited, not a tampering.
			a.Record(ctx, audit.Restored(dev, held, h.Epoch))
			a.logger.Info("a device restored its store from a backup", "peer", dev.Short(), "held", held.Head.Seq, "epoch", h.Epoch)
		}
	}
	return nil
}

// checkOwnHead checks a head of this device received from a peer against
// the chain. A head of an older epoch than this store's was superseded by
// a declared restore and is not checked (the newer head held is written
// back over it). A head of this epoch must be in the chain, and a head of
// a newer epoch cannot be, unless it was signed before this store's
// declared restore (a restore from a backup older than another restore):
// then the device moves to the epoch after it and signs its head again.
// Anything else is tampering.
func (a *Anchor) checkOwnHead(ctx context.Context, h audit.SignedHead) {
	epoch := a.epochNow()
	var err error
	switch {
	case h.Epoch < epoch:
		return
	case h.Epoch == epoch:
		err = a.log.CheckHead(ctx, h.Head)
	default:
		err = fmt.Errorf("%w: a signed head of epoch %d, this store is at epoch %d", audit.ErrTampered, h.Epoch, epoch)
	}
	if err == nil {
		return
	}
	if a.lostByRestore(h) {
		a.adoptEpoch(h.Epoch + 1)
		return
	}
	a.auditTampered(err, "a head of this device received from a peer")
}

func (a *Anchor) epochNow() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch
}

// lostByRestore reports whether h, a head of this device that its chain
// lacks, was signed before this store's latest declared restore: its
// entries were dropped by the restore, not by tampering.
func (a *Anchor) lostByRestore(h audit.SignedHead) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return h.Head.Seq > 0 && !a.restoredAt.IsZero() && h.At.Before(a.restoredAt)
}

// adoptEpoch moves this device's heads to epoch (if higher than its own)
// and has the head loop sign a head of it.
func (a *Anchor) adoptEpoch(epoch uint64) {
	a.mu.Lock()
	moved := epoch > a.epoch
	if moved {
		a.epoch, a.resign = epoch, true
	}
	a.mu.Unlock()
	if moved {
		a.logger.Info("a head signed before this store's restore point is newer than the store: moving to a new audit epoch", "epoch", epoch)
		a.Wake()
	}
}

// loadRestorePoint finds the latest declared restore in the chain (an
// audit.KindRestored entry about this device): its time, epoch and the
// backup's head.
func (a *Anchor) loadRestorePoint(ctx context.Context) {
	es, err := a.log.Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRestored}, Device: a.self()})
	if err != nil || len(es) == 0 {
		return
	}
	e := es[len(es)-1]
	a.restoredAt = time.UnixMilli(e.At.UnixMilli()) // heads' precision
	if f, ok := e.Detail.Get("epoch"); ok && f.Num > 0 {
		a.epoch = max(a.epoch, uint64(f.Num))
	}
	seq, _ := e.Detail.Get("seq")
	hash, _ := e.Detail.Get("hash")
	if b, err := hex.DecodeString(hash.Text); err == nil && len(b) == audit.HashSize && seq.Num > 0 {
		a.base.Seq = uint64(seq.Num)
		copy(a.base.Hash[:], b)
	}
}

// declareRestore handles the restore declaration (the root package's
// RestoredFile, Config.RestoreMarker) at open (before the node runs): it
// records the restore in the audit log with held, the backup's own head,
// moves to the epoch after held's, signs a head of it and removes the file
// once that head is committed. Without the file it does nothing.
func (a *Anchor) declareRestore(ctx context.Context, held audit.SignedHead) error {
	marker := a.marker
	if _, err := os.Stat(marker); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	epoch := max(held.Epoch, a.epoch) + 1
	e, err := a.log.Append(ctx, audit.Restored(a.self(), held, epoch))
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.last = max(a.last, e.Seq)
	a.epoch, a.resign, a.base, a.restoredAt = epoch, true, held.Head, time.UnixMilli(e.At.UnixMilli())
	a.mu.Unlock()
	a.logger.Info("store restored from a backup: new audit epoch", "epoch", epoch, "backup_head", held.Head.Seq)
	err = a.rep.Exclusive(ctx, "", func() error { return a.PublishHeadLocked(ctx) })
	if err != nil {
		return err
	}
	if h, ok := a.Held(ctx, a.self()); !ok || h.Epoch != epoch {
		return fmt.Errorf("no head of epoch %d was signed; %s kept", epoch, filepath.Base(marker))
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	if a.synced != nil {
		a.synced(filepath.Dir(marker))
	}
	return nil
}

// auditTampered latches a detection of this device's chain (nil err: none).
func (a *Anchor) auditTampered(err error, against string) {
	if err == nil {
		return
	}
	err = fmt.Errorf("%w (against %s): %w", ErrTampered, against, err)
	a.mu.Lock()
	first := a.tampered == nil
	if first {
		a.tampered = err
	}
	a.mu.Unlock()
	if !first {
		return
	}
	a.detected.Add(1)
	a.logger.Error("audit history rewritten or truncated", "against", against, "err", err)
	a.events.Tampered(a.self(), "audit chain lacks a signed head")
}

// Verify checks this device's audit chain: the whole chain, and that
// it contains the highest signed head of this device held here (its own,
// or one a peer sent back). It returns nil when both hold, or an error
// wrapping ErrTampered (and audit.ErrTampered) when the chain was
// rewritten or truncated, now or as detected earlier in this open.
func (a *Anchor) Verify(ctx context.Context) error {
	a.mu.Lock()
	latched := a.tampered
	a.mu.Unlock()
	if latched != nil {
		return latched
	}
	held, _ := a.Held(ctx, a.self())
	epoch := a.epochNow()
	if held.Epoch > epoch && a.lostByRestore(held) {
		a.adoptEpoch(held.Epoch + 1) // signed before the restore point
		held = audit.SignedHead{}
	}
	if a.inMemory() || held.Epoch < epoch {
		held = audit.SignedHead{} // superseded by a declared restore: check the chain only
	}
	if held.Epoch > epoch {
		a.auditTampered(fmt.Errorf("%w: a signed head of epoch %d, this store is at epoch %d", audit.ErrTampered, held.Epoch, epoch), "own stored head")
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.tampered
	}
	if err := a.log.VerifyHead(ctx, held.Head); err != nil {
		if errors.Is(err, audit.ErrTampered) && a.lostByRestore(held) {
			a.adoptEpoch(held.Epoch + 1)
			err = a.log.VerifyHead(ctx, audit.Head{})
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, audit.ErrTampered) {
			return fmt.Errorf("verify audit: %w", err)
		}
		a.auditTampered(err, "own stored head")
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.tampered
	}
	return nil
}

// Resolver settles concurrent versions of a device's head: the higher
// (audit.CompareHeads) wins, so every device keeps the same, highest one.
type Resolver struct{}

// Resolve implements core.Resolver.
func (Resolver) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	w := c.Local
	lh, lerr := audit.UnmarshalHead(c.Local.Value)
	rh, rerr := audit.UnmarshalHead(c.Remote.Value)
	switch {
	case c.Local.Deleted || lerr != nil:
		w = c.Remote
	case c.Remote.Deleted || rerr != nil:
	case audit.CompareSigned(rh, lh) > 0:
		w = c.Remote
	case audit.CompareSigned(rh, lh) == 0 && bytes.Compare(c.Remote.Value, c.Local.Value) > 0:
		w = c.Remote // the same head signed twice: any fixed choice
	}
	if w.Deleted {
		return core.Resolution{Deleted: true}, nil
	}
	return core.Resolution{Value: append([]byte(nil), w.Value...)}, nil
}
