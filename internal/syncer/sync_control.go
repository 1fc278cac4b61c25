package syncer

import (
	"context"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// The receive goroutine never writes to the stream: it hands Acks and the
// peer's requests (a repair's Repair, MerkleReq and Fetch) to the send
// goroutine, which writes them between its own frames. Were the receiver
// to write, two peers each sending more than a stream's flow-control
// window could both block writing, with neither reading: a deadlock.

// maxQueuedRequests bounds the peer's requests waiting for an answer.
const maxQueuedRequests = 4096

// queueAck asks the send goroutine to acknowledge vv (Acks coalesce: only
// the latest matters).
func (ps *Session) queueAck(vv core.VersionVector) {
	ps.ctlMu.Lock()
	ps.ctlAck = vv
	ps.ctlMu.Unlock()
	ps.poke()
}

// queueRequest hands a request from the peer to the send goroutine.
func (ps *Session) queueRequest(f wire.Frame) error {
	ps.ctlMu.Lock()
	defer ps.ctlMu.Unlock()
	if len(ps.ctlReqs) >= maxQueuedRequests {
		return fmt.Errorf("%w: more than %d requests unanswered", core.ErrProtocol, maxQueuedRequests)
	}
	ps.ctlReqs = append(ps.ctlReqs, wire.Frame{Type: f.Type, Payload: slices.Clone(f.Payload)})
	ps.poke()
	return nil
}

func (ps *Session) poke() {
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// serveControl writes the pending Ack and answers the queued requests (send
// goroutine only).
func (ps *Session) serveControl(ctx context.Context) error {
	ps.inControl = true
	defer func() { ps.inControl = false }()
	if ps.routesDirty.Swap(false) {
		if err := ps.sendDirect(); err != nil {
			return err
		}
	}
	for {
		// One request at a time: the others stay queued, where a long
		// answer's serveWhileBusy finds the quick ones.
		ps.ctlMu.Lock()
		ack := ps.ctlAck
		ps.ctlAck = nil
		var f wire.Frame
		have := len(ps.ctlReqs) > 0
		if have {
			f = ps.ctlReqs[0]
			ps.ctlReqs = ps.ctlReqs[1:]
		}
		ps.ctlMu.Unlock()
		if ack == nil && !have {
			return nil
		}
		if ack != nil {
			if err := ps.send(wire.TypeAck, wire.AppendVV(nil, ack)); err != nil {
				return err
			}
		}
		if have {
			if err := ps.answer(ctx, f); err != nil {
				return fmt.Errorf("sync repair: %w", err)
			}
		}
	}
}

// answer serves one request of the peer's repair.
func (ps *Session) answer(ctx context.Context, f wire.Frame) error {
	switch f.Type {
	case wire.TypeRepair:
		roots := map[string][32]byte{}
		for c, d := range ps.r.Roots() {
			roots[c] = d
		}
		return ps.send(wire.TypeRoots, wire.AppendRoots(nil, roots))
	case wire.TypeMerkleReq:
		return ps.answerMerkle(f.Payload)
	case wire.TypeFetch:
		coll, keys, err := wire.DecodeFetch(f.Payload)
		if err != nil {
			return err
		}
		return ps.sendRecords(ctx, coll, keys)
	case wire.TypeWant:
		return ps.answerWant(ctx, f.Payload)
	}
	return fmt.Errorf("%w: %v is not a request", core.ErrProtocol, f.Type)
}

// serveWhileBusy answers the peer in the middle of a long push (a
// repair's records, or the records of a Fetch): the peer may be repairing
// towards us at the same time, and it waits at most Limits.SyncTimeout
// for each answer, so an answer held until the push ends would cut the
// session off, and the next session would push again (send goroutine
// only). Inside an answer already, it answers only the quick requests (a
// repair's roots and Merkle steps) and the pending Ack, and leaves the
// rest queued, in order, for serveControl's next round.
func (ps *Session) serveWhileBusy(ctx context.Context) error {
	if !ps.inControl {
		select {
		case <-ps.kick:
			return ps.serveControl(ctx)
		default:
			return nil
		}
	}
	// The kick that announced a request may have been taken already by
	// the serveControl we are inside: look at the queue itself.
	ps.ctlMu.Lock()
	ack := ps.ctlAck
	ps.ctlAck = nil
	var quick []wire.Frame
	if slices.ContainsFunc(ps.ctlReqs, isQuick) {
		rest := ps.ctlReqs[:0:0]
		for _, f := range ps.ctlReqs {
			if isQuick(f) {
				quick = append(quick, f)
			} else {
				rest = append(rest, f)
			}
		}
		ps.ctlReqs = rest
	}
	ps.ctlMu.Unlock()
	if ack != nil {
		if err := ps.send(wire.TypeAck, wire.AppendVV(nil, ack)); err != nil {
			return err
		}
	}
	for _, f := range quick {
		if err := ps.answer(ctx, f); err != nil {
			return fmt.Errorf("sync repair: %w", err)
		}
	}
	return nil
}

// isQuick reports a request answered at once from memory: a repair's
// roots or one of its Merkle steps.
func isQuick(f wire.Frame) bool { return f.Type == wire.TypeRepair || f.Type == wire.TypeMerkleReq }
