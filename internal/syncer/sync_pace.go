package syncer

import (
	"context"

	"github.com/devicemesh/federation/core"
)

// Pacing: how far the in-order stream runs ahead of the peer's commits
// while a higher-priority transaction may overtake it.
//
// A Priority frame goes out between two frames of the stream, but the
// receiver reads its one stream in order: the Priority frame waits there
// behind every Changes frame sent before it, each committed in turn. Left
// to the transport's flow control, that queue holds megabytes (hundreds
// of milliseconds of commits), and overtaking on the sender gains little.
// So while the stream's next change is of a priority something may
// overtake (below OvertakeFloor, with an Urgent source configured), the
// sender paces it:
//
//   - it reads and sends frames of at most paceChanges changes, so that
//     one frame is a short commit;
//   - a frame that completes a transaction (the receiver commits on
//     receipt) goes out only while the changes of the transactions it
//     completed before and the peer has not acknowledged, plus this
//     frame's, stay within paceBudget, or when nothing is unacknowledged
//     (a single larger transaction still goes). A frame inside a
//     transaction that does not complete one goes out at once: the
//     receiver only buffers it, and the completing frame follows as soon
//     as the peer's Ack arrives, so the receiver is seldom idle.
//
// While it waits for an Ack, the sender serves its control frames (the
// peer may be waiting for our Acks just the same), and returns to the
// stream when an urgent commit is noted, so that it overtakes at once. A
// receiver that commits nothing of a frame because it held those changes
// already acknowledges it all the same (receiveChanges); an Ack that
// never comes holds the stream for paceWait at most. Pacing changes how
// the stream is cut into frames and when they leave, never which changes
// go or in what order: the ordering rules (policy's doc, "Overtaking on
// one session") are those of the unpaced stream. A stream of changes
// nothing can overtake (top priority, or no Urgent source) is not paced.

// Pacing limits.
const (
	// paceChanges bounds the changes of one frame of a paced stream.
	paceChanges = 256
	// paceBudget bounds the changes of the transactions a paced stream
	// has completed at the peer and the peer has not acknowledged: what a
	// Priority frame may wait behind.
	paceBudget = 1024
	// paceWait is how long an unacknowledged transaction holds a paced
	// stream before the sender stops waiting for its Ack.
	paceWait = heartbeat
)

// paceState is a session's pacing (send goroutine only).
type paceState struct {
	// on is set while the stream's next change may be overtaken.
	on bool
	// marks are the ends of the transactions completed by frames sent
	// while pacing and not yet acknowledged, oldest first, each with the
	// changes sent since the mark before it.
	marks []paceMark
	// cur counts the changes sent since the last mark.
	cur int
}

// paceMark is the last change of a frame that completed transactions,
// and the changes the peer commits up to it.
type paceMark struct {
	origin core.DeviceID
	seq    uint64
	n      int
}

// limit is the most changes to read for one frame: fewer while the
// stream is paced.
func (p *paceState) limit() int {
	if p.on {
		return paceChanges
	}
	return batchChanges
}

// paceCut sets whether the stream is paced, batch being what it sends
// next, and returns the part of batch that goes in one frame: while
// paced, at most paceChanges changes, ending where a transaction ends
// when one does (a transaction cut short is finished first, in a frame of
// its own: sendOrigin).
func (ps *Session) paceCut(batch []core.Change) []core.Change {
	_, none := ps.cfg.Urgent.(noUrgent)
	ps.pacing.on = !none && ps.cfg.Policy.Priority(ps.peer, batch[0].Collection) < OvertakeFloor
	if !ps.pacing.on {
		return batch
	}
	batch = batch[:min(len(batch), paceChanges)]
	for i := len(batch); i > 0; i-- {
		if endsTxn(batch[i-1]) {
			return batch[:i]
		}
	}
	return batch
}

// endsTxn reports whether c is the last change of its transaction.
func endsTxn(c core.Change) bool {
	return c.TxnLen == 0 || c.Seq >= c.TxnFirst+uint64(c.TxnLen)-1
}

// frameEnd returns the last change of batch that ends a transaction, and
// whether batch holds one at all (the receiver commits on its receipt).
func frameEnd(batch []core.Change) (seq uint64, completes bool) {
	last := batch[len(batch)-1]
	if endsTxn(last) {
		return last.Seq, true
	}
	return last.TxnFirst - 1, batch[0].Seq < last.TxnFirst
}

// pace holds a frame of a paced stream until the peer has acknowledged
// enough (see above). restart is set when an urgent commit was noted
// meanwhile: the caller reads the batch again, after overtaking.
func (ps *Session) pace(ctx context.Context, batch []core.Change) (restart bool, err error) {
	if !ps.pacing.on || len(batch) == 0 {
		return false, nil
	}
	if _, completes := frameEnd(batch); !completes {
		return false, nil
	}
	for {
		ps.pruneMarks()
		if len(ps.pacing.marks) == 0 || ps.unacked()+len(batch) <= paceBudget {
			return false, nil
		}
		wake := ps.r.Changed()
		if _, next := ps.cfg.Urgent.Urgent(ps.prio.seen); next != ps.prio.seen {
			return true, nil
		}
		beat, release := core.Wait(ps.sched, paceWait)
		select {
		case <-ps.kick: // an Ack arrived, or control frames to send
			err = ps.serveControl(ctx)
		case <-wake:
		case <-beat:
			ps.pacing.marks = ps.pacing.marks[1:] // never acknowledged: stop waiting for it
		case <-ctx.Done():
			err = ctx.Err()
		}
		release()
		if err != nil {
			return false, err
		}
	}
}

// paceSent accounts for a frame sent (send goroutine only).
func (ps *Session) paceSent(origin core.DeviceID, batch []core.Change) {
	if !ps.pacing.on {
		return
	}
	ps.pacing.cur += len(batch)
	if seq, completes := frameEnd(batch); completes {
		ps.pacing.marks = append(ps.pacing.marks, paceMark{origin: origin, seq: seq, n: ps.pacing.cur})
		ps.pacing.cur = 0
	}
}

// pruneMarks forgets the marks the peer has acknowledged.
func (ps *Session) pruneMarks() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	kept := ps.pacing.marks[:0]
	for _, m := range ps.pacing.marks {
		if ps.peerAcked[m.origin] < m.seq {
			kept = append(kept, m)
		}
	}
	clear(ps.pacing.marks[len(kept):])
	ps.pacing.marks = kept
}

// unacked counts the changes of the transactions completed and not
// acknowledged, and those sent since.
func (ps *Session) unacked() int {
	n := ps.pacing.cur
	for _, m := range ps.pacing.marks {
		n += m.n
	}
	return n
}
