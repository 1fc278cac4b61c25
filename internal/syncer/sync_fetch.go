package syncer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/wire"
)

// Selective sync on a session (see package policy): a change the policy
// leaves behind towards the peer goes out as a stub (carry, in
// sendChanges, for every frame that carries versions: Changes, Priority,
// Records); the values this device wants (its wanted list) are asked of
// the peer in Want frames and arrive in Values frames, each value checked
// against the digest of the stub it replaces.

// Wants is the replica's wanted list, as a Session asks peers for it and
// installs what they send (internal/replica: wanted.go).
type Wants interface {
	// WantedList returns the keys whose values this device wants.
	WantedList() []replica.Wanted
	// WantedGrew returns a channel closed when keys are next added.
	WantedGrew() <-chan struct{}
	// Fill installs values over the stubs of coll they match; refused
	// names the keys whose value did not match their version's stub,
	// stale those whose value is of another version than the stub.
	Fill(ctx context.Context, coll string, vals map[string]replica.Fetched) (filled int, refused, stale []string, err error)
}

// Fetch limits.
const (
	// wantBatch bounds the keys of one Want frame.
	wantBatch = 512
	// wantRetry is how long a key asked of a peer that did not hold it
	// waits before it is asked of that peer again (the peer may have
	// fetched it meanwhile).
	wantRetry = 30 * time.Second
)

// stubbed returns the changes as they travel to the peer: those the
// policy leaves behind as stubs (core.Record.AsStub). The slice is changes
// itself when nothing changes.
func (ps *Session) stubbed(changes []core.Change) []core.Change {
	var out []core.Change
	// A frame is mostly one collection: ask the policy once per run of it.
	var lastColl string
	var lastSummary, lastStub, asked bool
	stub := func(c *core.Change) bool {
		if !asked || c.Collection != lastColl || c.Summary != lastSummary {
			lastColl, lastSummary, asked = c.Collection, c.Summary, true
			lastStub = ps.cfg.Policy.Stub(ps.peer, c.Collection, c.Summary)
		}
		return lastStub
	}
	for i := range changes {
		c := &changes[i]
		if c.Stub || c.Deleted || !stub(c) {
			if out != nil {
				out = append(out, *c)
			}
			continue
		}
		if out == nil {
			out = make([]core.Change, i, len(changes))
			copy(out, changes[:i])
		}
		s := *c
		s.Record = c.Record.AsStub()
		out = append(out, s)
		ps.stats.stubsSent.Add(1)
	}
	if out == nil {
		return changes
	}
	return out
}

// askWanted sends Want frames for the wanted keys not asked of this peer
// yet (or asked more than wantRetry ago). Send goroutine only.
func (ps *Session) askWanted() error {
	w := ps.cfg.Wants
	if w == nil {
		return nil
	}
	now := ps.sched.Now()
	byColl := map[string][]string{}
	var order []string
	for _, k := range w.WantedList() {
		if !ps.cfg.Policy.Syncs(k.Collection) {
			continue
		}
		if ps.wasAsked(k, now) {
			continue
		}
		if byColl[k.Collection] == nil {
			order = append(order, k.Collection)
		}
		byColl[k.Collection] = append(byColl[k.Collection], k.Key)
	}
	for _, c := range order {
		keys := byColl[c]
		for len(keys) > 0 {
			n := min(len(keys), wantBatch)
			if err := ps.send(wire.TypeWant, wire.AppendFetch(nil, c, keys[:n])); err != nil {
				return err
			}
			ps.stats.wantsSent.Add(uint64(n))
			keys = keys[n:]
		}
	}
	return nil
}

// wasAsked reports whether k was asked of the peer less than wantRetry
// before now, and if not, records that it is asked now.
func (ps *Session) wasAsked(k replica.Wanted, now time.Time) bool {
	ps.askMu.Lock()
	defer ps.askMu.Unlock()
	if at, ok := ps.asked[k]; ok && now.Sub(at) < wantRetry {
		return true
	}
	ps.asked[k] = now
	return false
}

// wantedGrew is the wanted list's wake-up channel (nil without one).
func (ps *Session) wantedGrew() <-chan struct{} {
	if ps.cfg.Wants == nil {
		return nil
	}
	return ps.cfg.Wants.WantedGrew()
}

// answerWant sends the values of the keys the peer wants that this device
// holds whole, in Values frames of about batchBytes; a key held as a stub,
// deleted, unknown or of a collection that does not sync is answered as
// not held.
func (ps *Session) answerWant(ctx context.Context, payload []byte) error {
	coll, keys, err := wire.DecodeFetch(payload)
	if err != nil {
		return err
	}
	var vals []wire.Value
	size := 0
	flush := func() error {
		if len(vals) == 0 {
			return nil
		}
		err := ps.send(wire.TypeValues, wire.AppendValues(nil, coll, vals))
		vals, size = vals[:0], 0
		return err
	}
	for _, k := range keys {
		v := wire.Value{Key: k}
		if ps.cfg.Policy.Syncs(coll) {
			r, err := ps.r.Get(ctx, coll, k)
			switch {
			case errors.Is(err, core.ErrNotFound):
			case err != nil:
				return err
			case !r.Stub && !r.Deleted:
				v.Held, v.Origin, v.Seq, v.Value = true, r.Origin, r.Seq, r.Value
			}
		}
		if len(vals) > 0 && size+len(v.Value)+len(k)+16 > batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		vals = append(vals, v)
		size += len(v.Value) + len(k) + 16
		if v.Held {
			ps.stats.valuesSent.Add(1)
		}
	}
	return flush()
}

// receiveValues installs the values the peer sent for this device's
// stubs. A value that does not match its stub's digest is refused (and
// audited); its key stays wanted, for another peer.
func (ps *Session) receiveValues(ctx context.Context, payload []byte) error {
	coll, vals, err := wire.DecodeValues(payload)
	if err != nil {
		return fmt.Errorf("sync receive: %w", err)
	}
	if ps.cfg.Wants == nil {
		return nil
	}
	held := make(map[string]replica.Fetched, len(vals))
	for _, v := range vals {
		if v.Held {
			held[v.Key] = replica.Fetched{Origin: v.Origin, Seq: v.Seq, Value: v.Value}
		}
	}
	if len(held) == 0 {
		return nil
	}
	filled, refused, stale, err := ps.cfg.Wants.Fill(ctx, coll, held)
	if err != nil {
		return fmt.Errorf("sync fetch: %w", err)
	}
	if len(stale) > 0 {
		// The peer holds another version: ask again once ours changes
		// (the next round of the sender after a commit).
		ps.askMu.Lock()
		for _, k := range stale {
			delete(ps.asked, replica.Wanted{Collection: coll, Key: k})
		}
		ps.askMu.Unlock()
	}
	ps.stats.valuesRecv.Add(uint64(filled))
	if len(refused) > 0 {
		ps.stats.valuesRefused.Add(uint64(len(refused)))
		ps.cfg.Log.Warn("peer sent values that do not match their digests; refused", "peer", ps.peer.Short(), "count", len(refused))
		ps.cfg.Audit.Record(ctx, audit.Refusal(ps.peer, "value-digest"))
	}
	return nil
}
