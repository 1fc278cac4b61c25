package syncer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
)

// A Merkle repair brings a peer up to date when changelog deltas cannot:
// the log no longer holds changes the peer lacks (compacted), or a device
// came back from an old backup. The side that cannot serve deltas drives it:
//
//  1. Repair ->, <- Roots: the peer's Merkle roots per collection.
//  2. For every collection whose roots differ, MerkleReq -> / <- MerkleResp
//     rounds (package merkle) find the keys in which the two differ.
//  3. Records -> pushes our versions of those keys; Fetch -> asks for the
//     peer's, which come back as <- Records. Both sides merge what they
//     receive by causal context, so both end with the same versions.
//  4. Repaired -> with our version vector as of step 1 and the number of
//     records pushed: once the peer has received them all it holds the
//     effect of every change we held then, and raises its version vector
//     to it, so that deltas resume from there.

// ErrTimeout reports a peer that did not answer a sync request in time.
var ErrTimeout = errors.New("peer did not answer in time")

// repairFetchBatch bounds the keys in one Fetch frame.
const repairFetchBatch = 512

// repair runs a Merkle repair towards the peer (in the send goroutine).
func (ps *Session) repair(ctx context.Context) error {
	// Read the version vector under the write lock: commits update the
	// Merkle trees after the store, under that lock, so the trees then
	// reflect at least everything in start. (Read without it, start could
	// name a change whose record the trees do not show yet; the peer would
	// then raise its version vector past a record it never received.)
	start, err := ps.r.RepairBase(ctx)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	select {
	case <-ps.repairIn: // a stale reply from an earlier, abandoned round
	default:
	}
	sentBefore := ps.stats.recordsSent.Load()
	if err := ps.send(wire.TypeRepair, nil); err != nil {
		return err
	}
	f, err := ps.awaitRepair(ctx, wire.TypeRoots)
	if err != nil {
		return err
	}
	raw, err := wire.DecodeRoots(f.Payload)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	remote := raw
	local := ps.r.Roots()
	for _, c := range unionKeys(local, remote) {
		if local[c] == remote[c] || !ps.cfg.Policy.Syncs(c) {
			continue
		}
		if err := ps.repairCollection(ctx, c); err != nil {
			return fmt.Errorf("repair %q: %w", c, err)
		}
	}
	pushed := ps.stats.recordsSent.Load() - sentBefore
	if err := ps.send(wire.TypeRepaired, binary.AppendUvarint(wire.AppendVV(nil, start), pushed)); err != nil {
		return err
	}
	ps.mu.Lock()
	ps.peerHas.Merge(start)
	ps.mu.Unlock()
	ps.stats.repairs.Add(1)
	ps.cfg.Log.Info("merkle repair done", "peer", ps.peer.Short())
	return nil
}

// repairCollection finds the keys of one collection in which the two sides
// differ and exchanges their versions.
func (ps *Session) repairCollection(ctx context.Context, coll string) error {
	var salt [8]byte
	if _, err := io.ReadFull(ps.cfg.Rand, salt[:]); err != nil {
		return err
	}
	rec := ps.r.Reconciler(coll, merkle.Config{Salt: binary.LittleEndian.Uint64(salt[:])})
	req := rec.Start()
	for req != nil {
		b, err := req.AppendBinary(nil)
		if err != nil {
			return err
		}
		if err := ps.send(wire.TypeMerkleReq, wire.AppendNamed(nil, coll, b)); err != nil {
			return err
		}
		f, err := ps.awaitRepair(ctx, wire.TypeMerkleResp)
		if err != nil {
			return err
		}
		got, rest, err := wire.DecodeNamed(f.Payload)
		if err != nil {
			return err
		}
		if got != coll {
			return fmt.Errorf("%w: merkle response for %q, want %q", core.ErrProtocol, got, coll)
		}
		resp, err := merkle.DecodeResponse(rest, req)
		if err != nil {
			return err
		}
		req, err = rec.Next(resp)
		if err != nil {
			return err
		}
	}
	diff := rec.Diff()
	push := append(append([]string{}, diff.LocalOnly...), diff.Changed...)
	if err := ps.sendRecords(ctx, coll, push); err != nil {
		return err
	}
	pull := append(append([]string{}, diff.RemoteOnly...), diff.Changed...)
	for len(pull) > 0 {
		n := min(len(pull), repairFetchBatch)
		if err := ps.send(wire.TypeFetch, wire.AppendFetch(nil, coll, pull[:n])); err != nil {
			return err
		}
		pull = pull[n:]
	}
	return nil
}

// sendRecords sends the current versions of keys, in frames of about
// batchBytes. Keys no longer present are skipped.
func (ps *Session) sendRecords(ctx context.Context, coll string, keys []string) error {
	var batch []core.Change
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := ps.sendChanges(wire.TypeRecords, batch)
		ps.stats.recordsSent.Add(uint64(len(batch)))
		batch, size = batch[:0], 0
		return err
	}
	for _, k := range keys {
		// Reading each record can take a while (a cold disk, a loaded
		// device): answer the peer between reads, not only between
		// frames.
		if err := ps.serveWhileBusy(ctx); err != nil {
			return err
		}
		r, err := ps.r.Get(ctx, coll, k)
		if errors.Is(err, core.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		c := core.Change{Record: r, TxnFirst: r.Seq, TxnLen: 1}
		csize := changeSize(c) + 40*len(c.Context)
		if len(batch) > 0 && size+csize > batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, c)
		size += csize
	}
	return flush()
}

// awaitRepair waits for the receive goroutine to hand over a repair reply,
// at most Limits.SyncTimeout after the peer's data last arrived: a peer
// that stops answering (or a frame that never arrived) ends the session,
// and the next one starts afresh.
func (ps *Session) awaitRepair(ctx context.Context, want wire.Type) (wire.Frame, error) {
	limit := ps.cfg.Limits.SyncTimeout
	deadline := ps.sched.Now().Add(limit)
	timer, release := core.Wait(ps.sched, limit)
	defer func() { release() }()
	progress := ps.dataRecv()
	for {
		select {
		case <-timer:
			now := ps.sched.Now()
			// A peer whose data keeps arriving (the records of its own
			// repair, changes) is not silent: its answer waits behind
			// that data on the stream. Wait on while data comes, a
			// whole SyncTimeout at a time; heartbeats do not count.
			if p := ps.dataRecv(); p != progress {
				progress = p
				deadline = now.Add(limit)
			}
			if !now.Before(deadline) {
				return wire.Frame{}, fmt.Errorf("%w: no %v from peer within %s", ErrTimeout, want, limit)
			}
			release()
			timer, release = core.Wait(ps.sched, deadline.Sub(now))
		case f := <-ps.repairIn:
			if f.Type != want {
				return f, fmt.Errorf("%w: %v during repair, want %v", core.ErrProtocol, f.Type, want)
			}
			return f, nil
		case <-ps.kick:
			// The peer may be repairing towards us at the same time:
			// keep answering it while we wait. Answering may take long
			// (a push of records the peer fetched): that time is ours,
			// not the peer's, and moves the deadline.
			start := ps.sched.Now()
			if err := ps.serveControl(ctx); err != nil {
				return wire.Frame{}, err
			}
			deadline = deadline.Add(ps.sched.Now().Sub(start))
		case <-ctx.Done():
			return wire.Frame{}, ctx.Err()
		}
	}
}

// handleRepair serves the peer's side of a repair (in the receive
// goroutine). It reports whether the frame was a repair frame.
func (ps *Session) handleRepair(ctx context.Context, f wire.Frame) (bool, error) {
	switch f.Type {
	case wire.TypeRepair:
		ps.repairRecv = 0
		return true, ps.queueRequest(f)
	case wire.TypeMerkleReq, wire.TypeFetch:
		// Validate now, answer from the send goroutine.
		if f.Type == wire.TypeFetch {
			if _, _, err := wire.DecodeFetch(f.Payload); err != nil {
				return true, err
			}
		}
		return true, ps.queueRequest(f)
	case wire.TypeRecords:
		recs, err := wire.DecodeChanges(f.Payload)
		if err != nil {
			return true, err
		}
		ps.stats.recordsRecv.Add(uint64(len(recs)))
		ps.repairRecv += uint64(len(recs))
		return true, ps.r.ApplyRecords(ctx, recs)
	case wire.TypeRepaired:
		vv, pushed, err := wire.DecodeRepaired(f.Payload)
		if err != nil {
			return true, fmt.Errorf("repaired frame: %w", err)
		}
		// Raising the version vector is only sound if every record the
		// peer pushed arrived: count them.
		if pushed != ps.repairRecv {
			return true, fmt.Errorf("%w: repair pushed %d records, %d arrived", core.ErrProtocol, pushed, ps.repairRecv)
		}
		if err := ps.r.Advance(ctx, vv); err != nil {
			return true, err
		}
		have, err := ps.r.VersionVector(ctx)
		if err != nil {
			return true, err
		}
		ps.queueAck(have)
		return true, nil
	case wire.TypeRoots, wire.TypeMerkleResp:
		// A reply to our own repair: hand it to the send goroutine. A
		// reply nobody asked for is a protocol violation, detected there.
		select {
		case ps.repairIn <- wire.Frame{Type: f.Type, Payload: slices.Clone(f.Payload)}:
			return true, nil
		default:
			return true, fmt.Errorf("%w: unsolicited %v", core.ErrProtocol, f.Type)
		}
	}
	return false, nil
}

// answerMerkle answers one reconciliation request from the current tree.
func (ps *Session) answerMerkle(payload []byte) error {
	coll, rest, err := wire.DecodeNamed(payload)
	if err != nil {
		return err
	}
	req, err := merkle.DecodeRequest(rest)
	if err != nil {
		return err
	}
	b, err := ps.r.AnswerMerkle(coll, req)
	if err != nil {
		return err
	}
	return ps.send(wire.TypeMerkleResp, wire.AppendNamed(nil, coll, b))
}

func unionKeys(a, b map[string][32]byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string][32]byte{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// dataRecv counts the changes, records and values received from the peer:
// the progress of what it sends, heartbeats aside.
func (ps *Session) dataRecv() uint64 {
	return ps.stats.changesRecv.Load() + ps.stats.recordsRecv.Load() + ps.stats.valuesRecv.Load()
}
