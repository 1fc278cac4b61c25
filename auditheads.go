package federation

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
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
// ErrAuditTampered: logged as an error, raised as EventAuditTampered,
// counted in Stats.AuditTampered, returned by Node.VerifyAudit; the device
// then stops publishing heads, so that it never signs the rewritten history
// over the evidence its peers hold.
//
// Heads are published after headEvery new entries, or after headInterval
// (Config.Clock) when some entries are unpublished, and at Close when this
// open already writes under a replica (a head alone never mints a replica
// incarnation at Close). What this leaves possible is in the audit package
// doc ("Anchoring").
const (
	auditHeadsCollection = internalPrefix + "auditheads"
	headEvery            = 256
	headInterval         = 10 * time.Minute
	headTick             = time.Minute
)

// ErrAuditTampered reports that this device's audit chain lacks, or differs
// from, a head it signed earlier: its history was rewritten or truncated
// (or restored from an older copy). It wraps audit.ErrTampered.
var ErrAuditTampered = fmt.Errorf("audit history rewritten or truncated: %w", audit.ErrTampered)

// ErrForgedHead reports a _fed.auditheads record that does not hold a
// head validly signed by the device it is keyed by.
var ErrForgedHead = errors.New("forged audit head")

// anchor is the node's head publishing and tamper state.
type anchor struct {
	every    int           // entries between heads (headEvery; tests lower it)
	kick     chan struct{} // wakes the head loop (capacity 1)
	detected atomic.Uint64 // tamper detections, for Stats

	mu        sync.Mutex
	last      uint64    // the newest entry appended in this open
	pubSeq    uint64    // the entry count of the last head published (or held at open)
	lastPub   time.Time // when the last head was published (Config.Clock)
	memory    bool      // the audit log lives in memory: no own heads, no own checks
	tampered  error     // the first detection (nil: none); latches publishing off
	republish map[core.DeviceID]audit.SignedHead
}

func (a *anchor) inMemory() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.memory
}

func (a *anchor) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// noteAudited notes an appended entry and wakes the head loop when a head
// is due.
func (n *Node) noteAudited(seq uint64) {
	a := &n.anchor
	a.mu.Lock()
	a.last = max(a.last, seq)
	due := a.every > 0 && a.last >= a.pubSeq+uint64(a.every) && a.tampered == nil && !a.memory
	a.mu.Unlock()
	if due {
		a.wake()
	}
}

// startAnchor starts the head loop. Called by newNode, before the node
// runs. A node whose audit log lives in memory (a store without a
// database) signs no heads of its own, since its log restarts empty at
// every open; it still verifies and keeps its peers' heads.
func (n *Node) startAnchor(ctx context.Context) {
	if _, ok := auditDB(n.store); !ok {
		n.anchor.mu.Lock()
		n.anchor.memory = true
		n.anchor.mu.Unlock()
	}
	n.anchor.every = headEvery
	n.anchor.kick = make(chan struct{}, 1)
	n.anchor.lastPub = n.cfg.Clock.Now()
	held, _ := n.heldHead(ctx, n.DeviceID())
	n.anchor.pubSeq = held.Head.Seq
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.headLoop(held)
	}()
}

// headLoop checks the whole chain against held, the highest own head the
// store held at open (in the background: it reads every row, about 8 ms
// per 1,000 entries), then publishes this device's head when due and
// writes back the higher heads of devices whose lower heads arrived, until
// the node closes. Heads may be signed before that check ends: each is
// signed only if the chain holds the head it supersedes (Log.CheckHead),
// and since that head pins the hash at its position, which commits to
// every row before it, a rewrite before it is caught there; a row left
// inconsistent stays visible to Verify whatever is signed after it.
func (n *Node) headLoop(held audit.SignedHead) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	if n.anchor.inMemory() {
		held = audit.SignedHead{} // the log restarted empty: check the chain only
	}
	err := n.audit.VerifyHead(ctx, held.Head)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		n.auditTampered(err, "own stored head")
	}
	t := time.NewTicker(headTick)
	defer t.Stop()
	for {
		select {
		case <-n.closed:
			return
		case <-n.anchor.kick:
		case <-t.C:
		}
		n.writeMu.Lock()
		if n.alive() == nil {
			n.anchorLocked(context.Background(), false)
		}
		n.writeMu.Unlock()
	}
}

// anchorLocked writes back held heads and publishes this device's head when
// due (or, with closing, whenever entries are unpublished and a replica is
// in use). Called with writeMu held.
func (n *Node) anchorLocked(ctx context.Context, closing bool) {
	a := &n.anchor
	a.mu.Lock()
	back := a.republish
	a.republish = nil
	fresh := a.last > a.pubSeq // entries appended here since the last head
	due := fresh && (a.last >= a.pubSeq+uint64(a.every) || n.cfg.Clock.Now().Sub(a.lastPub) >= headInterval)
	if closing {
		due = fresh && !n.replica.IsZero()
	}
	a.mu.Unlock()
	var ops []txOp
	for dev, h := range back {
		if cur, ok := n.heldHead(ctx, dev); ok && audit.CompareHeads(cur.Head, h.Head) >= 0 {
			continue // already as high
		}
		ops = append(ops, txOp{collection: auditHeadsCollection, key: hex.EncodeToString(dev[:]), value: h.Marshal()})
	}
	if len(ops) > 0 {
		if err := n.commitLocal(ctx, ops); err != nil {
			n.log.Error("write back audit heads", "err", err)
		}
	}
	if due {
		if err := n.publishHeadLocked(ctx); err != nil {
			n.log.Error("publish audit head", "err", err)
		}
	}
}

// publishHeadLocked signs and commits this device's current audit head,
// superseding the highest own head the store holds, after checking that the
// chain still contains that one. It does nothing once tampering was
// detected. Called with writeMu held.
func (n *Node) publishHeadLocked(ctx context.Context) error {
	a := &n.anchor
	a.mu.Lock()
	stop := a.tampered != nil || a.memory
	a.mu.Unlock()
	if stop {
		return nil
	}
	head, err := n.audit.Head(ctx)
	if err != nil {
		return err
	}
	held, ok := n.heldHead(ctx, n.DeviceID())
	if ok {
		if head.Seq <= held.Head.Seq {
			if head != held.Head {
				n.auditTampered(n.audit.CheckHead(ctx, held.Head), "own stored head")
			}
			return nil
		}
		if err := n.audit.CheckHead(ctx, held.Head); err != nil {
			n.auditTampered(err, "own stored head")
			return nil
		}
	}
	sh := audit.SignedHead{Key: n.PublicKey(), Head: head, Prev: held.Head, At: n.cfg.Clock.Now()}
	sh.Sign(n.ident.Sign)
	self := n.DeviceID()
	if err := n.commitLocal(ctx, []txOp{{collection: auditHeadsCollection, key: hex.EncodeToString(self[:]), value: sh.Marshal()}}); err != nil {
		return err
	}
	a.mu.Lock()
	a.pubSeq, a.lastPub = head.Seq, n.cfg.Clock.Now()
	a.mu.Unlock()
	return nil
}

// heldHead returns the signed head of dev that the store holds, if any.
func (n *Node) heldHead(ctx context.Context, dev core.DeviceID) (audit.SignedHead, bool) {
	r, err := n.store.Get(ctx, auditHeadsCollection, hex.EncodeToString(dev[:]))
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

// checkHeads is the ingress check for audit heads arriving from a peer
// (from: their origin), with writeMu held, before they are committed. A
// forged head refuses the whole transaction. A head of this device is
// checked against the chain; a head lower than the one held, or one that
// forks from it, is noted (see the comment at the top of this file).
func (n *Node) checkHeads(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	for _, r := range recs {
		if r.Collection != auditHeadsCollection {
			continue
		}
		h, err := decodeHeadRecord(r)
		if err != nil {
			n.record(ctx, audit.Refusal(n.OriginDevice(from), "forged-audit-head"))
			return fmt.Errorf("%w: %w", core.ErrProtocol, err)
		}
		dev := h.Device()
		if dev == n.DeviceID() && !n.anchor.inMemory() {
			if err := n.audit.CheckHead(ctx, h.Head); err != nil {
				n.auditTampered(err, "a head of this device received from a peer")
			}
		}
		held, ok := n.heldHead(ctx, dev)
		switch {
		case !ok || audit.CompareHeads(h.Head, held.Head) == 0:
		case audit.CompareHeads(h.Head, held.Head) < 0:
			n.record(ctx, audit.Refusal(dev, "audit-head-rollback"))
			n.anchor.mu.Lock()
			if n.anchor.republish == nil {
				n.anchor.republish = map[core.DeviceID]audit.SignedHead{}
			}
			if cur, ok := n.anchor.republish[dev]; !ok || audit.CompareHeads(cur.Head, held.Head) < 0 {
				n.anchor.republish[dev] = held
			}
			n.anchor.mu.Unlock()
			n.anchor.wake()
		case !audit.Extends(held, h) && dev != n.DeviceID():
			n.anchor.detected.Add(1)
			n.record(ctx, audit.Refusal(dev, "audit-head-fork"))
			n.log.Error("audit history of a device forked", "peer", dev.Short(), "held", held.Head.Seq, "received", h.Head.Seq)
			n.events.publish(Event{Kind: EventAuditTampered, Origin: dev, Reason: "audit head forks from the one held"})
		}
	}
	return nil
}

// auditTampered latches a detection of this device's chain (nil err: none).
func (n *Node) auditTampered(err error, against string) {
	if err == nil {
		return
	}
	err = fmt.Errorf("%w (against %s): %w", ErrAuditTampered, against, err)
	n.anchor.mu.Lock()
	first := n.anchor.tampered == nil
	if first {
		n.anchor.tampered = err
	}
	n.anchor.mu.Unlock()
	if !first {
		return
	}
	n.anchor.detected.Add(1)
	n.log.Error("audit history rewritten or truncated", "against", against, "err", err)
	n.events.publish(Event{Kind: EventAuditTampered, Origin: n.DeviceID(), Reason: "audit chain lacks a signed head"})
}

// VerifyAudit checks this device's audit chain: the whole chain, and that
// it contains the highest signed head of this device held here (its own,
// or one a peer sent back). It returns nil when both hold, or an error
// wrapping ErrAuditTampered (and audit.ErrTampered) when the chain was
// rewritten or truncated, now or as detected earlier in this open.
func (n *Node) VerifyAudit(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	n.anchor.mu.Lock()
	latched := n.anchor.tampered
	n.anchor.mu.Unlock()
	if latched != nil {
		return latched
	}
	held, _ := n.heldHead(ctx, n.DeviceID())
	if n.anchor.inMemory() {
		held = audit.SignedHead{}
	}
	if err := n.audit.VerifyHead(ctx, held.Head); err != nil {
		if !errors.Is(err, audit.ErrTampered) {
			return fmt.Errorf("verify audit: %w", err)
		}
		n.auditTampered(err, "own stored head")
		n.anchor.mu.Lock()
		defer n.anchor.mu.Unlock()
		return n.anchor.tampered
	}
	return nil
}

// headResolver settles concurrent versions of a device's head: the higher
// (audit.CompareHeads) wins, so every device keeps the same, highest one.
type headResolver struct{}

// Resolve implements core.Resolver.
func (headResolver) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	w := c.Local
	lh, lerr := audit.UnmarshalHead(c.Local.Value)
	rh, rerr := audit.UnmarshalHead(c.Remote.Value)
	switch {
	case c.Local.Deleted || lerr != nil:
		w = c.Remote
	case c.Remote.Deleted || rerr != nil:
	case audit.CompareHeads(rh.Head, lh.Head) > 0:
		w = c.Remote
	case audit.CompareHeads(rh.Head, lh.Head) == 0 && bytes.Compare(c.Remote.Value, c.Local.Value) > 0:
		w = c.Remote // the same head signed twice: any fixed choice
	}
	if w.Deleted {
		return core.Resolution{Deleted: true}, nil
	}
	return core.Resolution{Value: append([]byte(nil), w.Value...)}, nil
}
