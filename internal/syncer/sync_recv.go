package syncer

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// receive reads the peer's frames until the stream ends: its SyncHello,
// Changes (applied atomically per complete transaction), Acks and CaughtUp
// announcements. Malformed input ends the session with an error wrapping
// core.ErrProtocol; nothing of an incomplete transaction is ever applied.
func (ps *Session) receive(ctx context.Context, in core.Stream) error {
	asm := newTxnAssembler(ps.cfg.Limits.MaxPending)
	ahead := ps.readAhead(in)
	defer ahead.stop()
	gotHello, gotDirect := false, false
	for {
		rf := ahead.next()
		if rf.err != nil {
			return fmt.Errorf("sync receive: %w", rf.err)
		}
		f := rf.f
		ps.stats.framesRecv.Add(1)
		ps.stats.bytesRecv.Add(uint64(wire.HeaderSize + len(f.Payload)))
		if !gotHello && f.Type != wire.TypeSyncHello {
			return fmt.Errorf("%w: %v frame before hello", core.ErrProtocol, f.Type)
		}
		switch f.Type {
		case wire.TypeSyncHello:
			if gotHello {
				return fmt.Errorf("%w: second hello", core.ErrProtocol)
			}
			gotHello = true
			h, err := wire.DecodeSyncHello(f.Payload)
			if err != nil {
				return fmt.Errorf("sync receive: %w", err)
			}
			vv := h.VV
			ps.mu.Lock()
			ps.helloVV = vv
			ps.peerHas.Merge(vv)
			ps.peerAcked.Merge(vv)
			ps.mu.Unlock()
			close(ps.hello)
			ps.links.OnHello(ctx, h)
		case wire.TypeDirect:
			vv, err := decodeWholeVV(f.Payload)
			if err != nil {
				return err
			}
			ps.mu.Lock()
			ps.direct = make(map[core.DeviceID]bool, len(vv))
			for d := range vv {
				ps.direct[d] = true
			}
			first := !gotDirect
			gotDirect = true
			ps.mu.Unlock()
			if first {
				close(ps.routed)
			}
			ps.poke()
		case wire.TypeChanges:
			if err := ps.receiveChanges(ctx, asm, rf.changes, rf.decodeErr, len(f.Payload)); err != nil {
				return err
			}
		case wire.TypePriority:
			if err := ps.receivePriority(ctx, f.Payload); err != nil {
				return err
			}
		case wire.TypeWant:
			// Validate now, answer from the send goroutine.
			if _, _, err := wire.DecodeFetch(f.Payload); err != nil {
				return fmt.Errorf("sync receive: %w", err)
			}
			if err := ps.queueRequest(f); err != nil {
				return err
			}
		case wire.TypeValues:
			if err := ps.receiveValues(ctx, f.Payload); err != nil {
				return err
			}
		case wire.TypeAck, wire.TypeCaughtUp:
			vv, rest, err := wire.DecodeVV(f.Payload)
			if err != nil {
				return fmt.Errorf("sync receive: %w", err)
			}
			switch {
			case f.Type == wire.TypeCaughtUp:
				roots, err := wire.DecodeRoots(rest)
				if err != nil {
					return fmt.Errorf("sync receive: %w", err)
				}
				if err := ps.checkCaughtUp(ctx, asm, vv); err != nil {
					return err
				}
				if err := ps.compareRoots(ctx, vv, roots); err != nil {
					return err
				}
			case len(rest) != 0:
				return fmt.Errorf("%w: trailing bytes after version vector", core.ErrProtocol)
			}
			ps.mu.Lock()
			if f.Type == wire.TypeAck {
				ps.peerAcked.Merge(vv)
			} else {
				ps.caughtUp = vv
			}
			ps.peerHas.Merge(vv)
			ps.mu.Unlock()
			ps.update.Notify()
			ps.poke() // a sender waiting for the peer to hold more may go on
		default:
			handled, err := ps.handleRepair(ctx, f)
			if err != nil {
				return fmt.Errorf("sync repair: %w", err)
			}
			if !handled {
				return fmt.Errorf("%w: unexpected %v frame on sync stream", core.ErrProtocol, f.Type)
			}
		}
		ahead.recycle(f.Payload) // nothing above keeps it
	}
}

// receiveChanges takes one Changes frame of size bytes, decoded (or not:
// decodeErr) by the read-ahead, applies every transaction it completes in
// one atomic commit and acknowledges.
func (ps *Session) receiveChanges(ctx context.Context, asm *txnAssembler, changes []core.Change, decodeErr error, size int) error {
	if decodeErr != nil {
		return fmt.Errorf("sync receive: %w", decodeErr)
	}
	ps.stats.changesRecv.Add(uint64(len(changes)))
	// The peer holds every transaction it sends a change of, whole: record
	// it before anything is applied (an apply wakes this session's sender,
	// which must not send those changes back).
	for _, c := range changes {
		if end := c.TxnFirst + uint64(c.TxnLen) - 1; c.TxnLen > 0 && c.TxnFirst > 0 && end >= c.TxnFirst {
			ps.peerHasRaise(c.Origin, end)
		}
	}
	held, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	redundant := false
	for _, c := range changes {
		if c.Seq <= held[c.Origin] {
			ps.stats.redundant.Add(1)
			redundant = true
		}
	}
	ready, err := asm.add(changes, held)
	if err != nil {
		return err
	}
	ready = ps.splice(ready, held) // transactions sent ahead (sync_priority.go)
	if len(ready) == 0 {
		if redundant {
			// Nothing to commit, but a paced sender waits for our Ack
			// of what it sent (sync_pace.go).
			ps.queueAck(held)
		}
		return nil
	}
	return ps.applyReady(ctx, ready, size)
}

// applyReady commits complete transactions, in order, in one atomic
// commit and acknowledges; size is the bytes they arrived in.
func (ps *Session) applyReady(ctx context.Context, ready [][]core.Change, size int) error {
	res, err := ps.r.ApplyRemote(ctx, ready)
	if err != nil {
		return fmt.Errorf("sync apply from %s: %w", ps.peer.Short(), err)
	}
	ps.stats.conflicts.Add(uint64(res.Conflicts))
	ps.recvAudit.add(ctx, int64(res.Txns), int64(res.Changes), int64(size))
	if res.Conflicts > 0 {
		e := audit.ConflictResolved(ps.peer, "*", "policy")
		e.Detail = append(e.Detail, audit.Num("count", int64(res.Conflicts)))
		ps.cfg.Audit.Record(ctx, e)
	}
	vv, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync ack: %w", err)
	}
	ps.queueAck(vv)
	return nil
}

// checkCaughtUp verifies a peer's claim to have sent everything up to vv.
// The peer sends every change it holds except those it knows we hold (from
// our own Hello, Acks and CaughtUp, or because we sent them), and every
// frame before this one has been applied, so holding less than vv, or an
// incomplete transaction, means frames were lost on the way.
func (ps *Session) checkCaughtUp(ctx context.Context, asm *txnAssembler, vv core.VersionVector) error {
	if err := ps.releaseHeld(ctx); err != nil {
		return err
	}
	have, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	// A part of a transaction this device holds by now (received whole
	// from another peer, or through a repair) is dropped, not an error;
	// one the claim does not cover is still on its way.
	asm.dropHeld(have)
	for origin, p := range asm.pending {
		if vv[origin] >= p[0].TxnFirst {
			return fmt.Errorf("%w: peer caught up with a transaction of %s incomplete", core.ErrProtocol, origin.Short())
		}
	}
	for d, seq := range vv {
		if have[d] < seq {
			return fmt.Errorf("%w: peer sent changes of %s up to %d that never arrived (have %d)", core.ErrProtocol, d.Short(), seq, have[d])
		}
	}
	return nil
}

// compareRoots checks the peer's roots when it holds exactly the changes we
// hold (a CaughtUp without roots, from a sender that leaves some origins
// to other devices, claims only what it sent: nothing to compare): then
// the records must be identical, and roots that differ (records
// merged differently, a repair cut short, a restored backup) ask our sender
// for a Merkle repair, again and again with backoff until the roots are
// equal; a difference that does not settle is reported (repair_gate.go).
func (ps *Session) compareRoots(ctx context.Context, vv core.VersionVector, theirs map[string][32]byte) error {
	if len(theirs) == 0 {
		return nil
	}
	ours, roots, err := ps.r.Snapshot(ctx)
	if err != nil {
		return err
	}
	if ours.Compare(vv) != core.Equal {
		return nil
	}
	if rootsKey(roots, theirs) == ([32]byte{}) {
		ps.settled()
		return nil
	}
	if !ps.askRepair(vv, roots, theirs) {
		return nil
	}
	select {
	case ps.repairReq <- struct{}{}:
	default: // one is pending already
	}
	return nil
}

// rootsKey fingerprints a pair of root sets; zero when they are equal.
func rootsKey(ours, theirs map[string][32]byte) [32]byte {
	if len(ours) == len(theirs) {
		same := true
		for c, r := range ours {
			if theirs[c] != r {
				same = false
				break
			}
		}
		if same {
			return [32]byte{}
		}
	}
	h := sha256.New()
	h.Write(wire.AppendRoots(nil, ours))
	h.Write(wire.AppendRoots(nil, theirs))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func decodeWholeVV(b []byte) (core.VersionVector, error) {
	vv, rest, err := wire.DecodeVV(b)
	if err != nil {
		return nil, fmt.Errorf("sync receive: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after version vector", core.ErrProtocol)
	}
	return vv, nil
}

// txnAssembler collects changes per origin until their transaction is
// complete. It enforces that each origin's changes arrive in sequence and
// bounds the bytes held for incomplete transactions.
type txnAssembler struct {
	limit   int
	held    int
	pending map[core.DeviceID][]core.Change
}

// maxTxnPrealloc bounds the changes a transaction's buffer is allocated
// for up front.
const maxTxnPrealloc = 4096

func newTxnAssembler(limit int) *txnAssembler {
	return &txnAssembler{limit: limit, pending: map[core.DeviceID][]core.Change{}}
}

// add takes changes in arrival order and returns the transactions they
// complete, in order. held is what the store holds: a change held already
// (sent again after a partial send, or a tail of a transaction that came
// whole from elsewhere) is dropped, and so is a partial transaction the
// store now holds whole. Anything else out of order is a protocol error.
func (a *txnAssembler) add(changes []core.Change, held core.VersionVector) ([][]core.Change, error) {
	var ready [][]core.Change
	for _, c := range changes {
		p := a.pending[c.Origin]
		if len(p) > 0 && c.TxnFirst == p[0].TxnFirst && c.Seq <= p[len(p)-1].Seq {
			if c.Seq != c.TxnFirst {
				continue // a change of the partial transaction, sent again
			}
			a.drop(c.Origin) // the transaction sent again from its start
			p = nil
		}
		if len(p) > 0 && c.TxnFirst != p[0].TxnFirst && p[0].TxnFirst+uint64(p[0].TxnLen)-1 <= held[c.Origin] {
			a.drop(c.Origin) // the rest of a transaction held already
			p = nil
		}
		switch {
		case len(p) == 0 && c.Seq != c.TxnFirst:
			if c.Seq <= held[c.Origin] {
				continue // the tail of a transaction held already
			}
			return nil, fmt.Errorf("%w: change %d of %s arrives without the start of its transaction", core.ErrProtocol, c.Seq, c.Origin.Short())
		case len(p) > 0 && (c.Seq != p[len(p)-1].Seq+1 || c.TxnFirst != p[0].TxnFirst || c.TxnLen != p[0].TxnLen):
			return nil, fmt.Errorf("%w: change %d of %s out of order", core.ErrProtocol, c.Seq, c.Origin.Short())
		}
		if p == nil {
			// Room for the whole transaction, within reason: its length
			// is the peer's word, the bytes held are bounded below.
			p = make([]core.Change, 0, min(int(c.TxnLen), maxTxnPrealloc))
		}
		p = append(p, c)
		a.held += changeSize(c)
		if a.held > a.limit {
			return nil, fmt.Errorf("%w: %d bytes held", ErrPendingTooLarge, a.held)
		}
		if len(p) == int(c.TxnLen) {
			ready = append(ready, p)
			for _, done := range p {
				a.held -= changeSize(done)
			}
			delete(a.pending, c.Origin)
			continue
		}
		a.pending[c.Origin] = p
	}
	return ready, nil
}

// drop forgets origin's partial transaction.
func (a *txnAssembler) drop(origin core.DeviceID) {
	for _, c := range a.pending[origin] {
		a.held -= changeSize(c)
	}
	delete(a.pending, origin)
}

// dropHeld forgets the partial transactions that held covers whole.
func (a *txnAssembler) dropHeld(held core.VersionVector) {
	for origin, p := range a.pending {
		if p[0].TxnFirst+uint64(p[0].TxnLen)-1 <= held[origin] {
			a.drop(origin)
		}
	}
}

// changeSize is what a change counts for in the progress bytes.
func changeSize(c core.Change) int {
	return len(c.Value) + len(c.Key) + len(c.Collection) + changeOverhead
}

// changeOverhead is what changeSize counts for a change beyond its
// collection, key and value: its metadata, roughly.
const changeOverhead = 64
