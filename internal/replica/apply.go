package replica

import (
	"context"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
)

// ErrGap reports changes that do not follow on from what this device holds
// for their origin: the sender skipped part of the origin's changelog.
var ErrGap = errors.New("changes leave a gap")

// ErrCausality reports a change that arrived before a change it depends on.
var ErrCausality = errors.New("change arrived before its causal dependencies")

// Txn is one complete transaction received from a peer.
type Txn []core.Change

// Validate checks a transaction's shape: one origin, consecutive sequence
// numbers matching its TxnFirst/TxnLen, valid keys, and a causal context
// that contains the change's own dot.
func (t Txn) Validate() error {
	if len(t) == 0 {
		return fmt.Errorf("%w: empty transaction", core.ErrProtocol)
	}
	first := t[0]
	if first.Origin.IsZero() || first.TxnFirst == 0 || int(first.TxnLen) != len(t) {
		return fmt.Errorf("%w: transaction header (first %d, len %d, have %d)", core.ErrProtocol, first.TxnFirst, first.TxnLen, len(t))
	}
	for i, c := range t {
		if c.Origin != first.Origin || c.TxnFirst != first.TxnFirst || c.TxnLen != first.TxnLen {
			return fmt.Errorf("%w: change %d of a transaction belongs to another", core.ErrProtocol, i)
		}
		if c.Seq != first.TxnFirst+uint64(i) {
			return fmt.Errorf("%w: change %d has sequence %d, want %d", core.ErrProtocol, i, c.Seq, first.TxnFirst+uint64(i))
		}
		if c.Context[c.Origin] != c.Seq {
			return fmt.Errorf("%w: causal context of change %d lacks its own write", core.ErrProtocol, c.Seq)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("%w: change %d: %w", core.ErrProtocol, c.Seq, err)
		}
		if c.Deleted && len(c.Value) > 0 {
			return fmt.Errorf("%w: tombstone %d carries a value", core.ErrProtocol, c.Seq)
		}
	}
	return nil
}

// ApplyResult summarises one ApplyRemote call.
type ApplyResult struct {
	Txns, Changes, Skipped int
	Conflicts              int
}

// ApplyRemote applies complete remote transactions in order, atomically as a
// whole (one store commit): every transaction is either entirely visible or
// not at all. Transactions already held are skipped, so duplicated or
// replayed deliveries change nothing. Timestamps far ahead of the local
// clock do not refuse a transaction from a trusted peer: the clock follows
// them only up to Config.MaxClockDrift, and the host is told (see
// observeRemote).
func (n *Replica) ApplyRemote(ctx context.Context, txns []Txn) (ApplyResult, error) {
	var res ApplyResult
	for _, t := range txns {
		if err := t.Validate(); err != nil {
			return res, err
		}
	}
	n.writeMu.Lock()
	defer n.unlock()
	if err := n.alive(); err != nil {
		return res, err
	}
	vv, err := n.store.VersionVector(ctx)
	if err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	next := vv.Clone()
	var fresh []Txn
	var maxTS core.Timestamp
	var maxOrigin core.DeviceID
	for _, t := range txns {
		origin, first, last := t[0].Origin, t[0].TxnFirst, t[len(t)-1].Seq
		switch have := next[origin]; {
		case last <= have:
			res.Skipped += len(t)
			continue
		case first != have+1:
			return res, fmt.Errorf("apply %s: %w: transaction starts at %d, have up to %d", origin.Short(), ErrGap, first, have)
		}
		// Causal delivery: everything the transaction depends on must be
		// here already, or a later local write could fail to supersede it.
		for _, c := range t {
			for d, seq := range c.Context {
				if d != origin && seq > next[d] {
					return res, fmt.Errorf("apply %s:%d: %w: depends on %s:%d, have %d", origin.Short(), c.Seq, ErrCausality, d.Short(), seq, next[d])
				}
			}
		}
		next[origin] = last
		fresh = append(fresh, t)
		for _, c := range t {
			if c.Timestamp > maxTS {
				maxTS, maxOrigin = c.Timestamp, origin
			}
		}
	}
	if len(fresh) == 0 {
		return res, nil
	}
	n.observeRemote(maxOrigin, maxTS)
	total := 0
	for _, t := range fresh {
		total += len(t)
	}
	// One array for the records the ingress check reads, cut per
	// transaction.
	all := make([]core.Record, total)
	for _, t := range fresh {
		recs := all[:len(t):len(t)]
		all = all[len(t):]
		for i := range t {
			recs[i] = t[i].Record
		}
		if err := n.check(ctx, t[0].Origin, recs); err != nil {
			return res, err
		}
	}
	// The changes are only read from here on: a lone transaction (the
	// common case) is merged as it came.
	changes := []core.Change(fresh[0])
	if len(fresh) > 1 {
		changes = make([]core.Change, 0, total)
		for _, t := range fresh {
			changes = append(changes, t...)
		}
	}
	b, events, conflicts, err := n.mergeChanges(ctx, changes, true)
	if err != nil {
		return res, err
	}
	if err := n.commit(ctx, SourceRemote, b, events, maxTS); err != nil {
		return res, fmt.Errorf("apply: %w", err)
	}
	if len(n.early) > 0 {
		if vv, err := n.store.VersionVector(ctx); err == nil {
			n.early.prune(vv)
		}
	}
	res.Txns, res.Changes, res.Conflicts = len(fresh), len(b.Changes), conflicts
	return res, nil
}

// mergeChanges decides, for every change, the record version that results
// from merging it into the current state, and builds the batch to commit:
// a peer's transactions (logged: the changes enter the changelog too) or a
// repair's record versions (not logged). Both read the current versions in
// bulk and let later changes of one call see earlier ones.
func (n *Replica) mergeChanges(ctx context.Context, changes []core.Change, logged bool) (core.Batch, []Event, int, error) {
	var b core.Batch
	if logged {
		// Every change enters the changelog, whatever its merge gives.
		b.Changes = changes
	}
	b.Records = make([]core.Record, 0, len(changes))
	events := make([]Event, 0, len(changes))
	conflicts := 0
	// Later changes in the same call see earlier ones, not the store.
	pending := make(map[txKey]int, len(changes))
	// The stored versions of the whole batch, read in bulk when the store
	// can (one query per few hundred keys instead of one per change).
	stored, err := n.fetchCurrent(ctx, changes)
	if err != nil {
		return b, nil, 0, err
	}
	for _, c := range changes {
		k := txKey{c.Collection, c.Key}
		var cur *core.Record
		if i, ok := pending[k]; ok {
			cur = &b.Records[i]
		} else if cur, err = n.current(ctx, stored, c.Collection, c.Key); err != nil {
			return b, nil, 0, err
		}
		out, changed, conflicted, err := n.merge(ctx, cur, c.Record)
		if err != nil {
			return b, nil, 0, err
		}
		if conflicted {
			conflicts++
		}
		if !changed {
			continue
		}
		if i, ok := pending[k]; ok {
			b.Records[i] = out
		} else {
			pending[k] = len(b.Records)
			b.Records = append(b.Records, out)
		}
		events = append(events, Event{Kind: EventChange, Collection: out.Collection, Key: out.Key, Deleted: out.Deleted, Origin: n.OriginDevice(c.Origin), Timestamp: out.Timestamp})
	}
	return b, events, conflicts, nil
}

// merge returns the version that results from receiving rem while holding
// cur (nil: nothing). Versions are ordered by causal context; only truly
// concurrent ones reach the collection's Resolver. The outcome of a
// resolution depends only on the two versions, never on which one is local,
// so every device computes the same record.
func (n *Replica) merge(ctx context.Context, cur *core.Record, rem core.Record) (out core.Record, changed, conflicted bool, err error) {
	if cur == nil {
		return rem, true, false, nil
	}
	switch rem.Context.Compare(cur.Context) {
	case core.After:
		return rem, true, false, nil
	case core.Before:
		return *cur, false, false, nil
	case core.Equal:
		if merkle.RecordDigest(rem) == merkle.RecordDigest(*cur) {
			return *cur, false, false, nil
		}
		// The same causal context with different records: two devices
		// settled the same versions differently (or a store altered one).
		// Keeping the local one would leave them diverged for good, with
		// equal version vectors; settle the pair as concurrent versions
		// instead, which gives the same record on both devices.
	}
	if cur.Stub || rem.Stub {
		// A stub has no value to merge: concurrent versions of which one
		// is held as a stub settle by version (last writer wins), the
		// winner kept as it is held, stub or not (policy/doc.go).
		win := *cur
		if conflict.Compare(rem, *cur) > 0 {
			win = rem
		}
		out = win
		out.Context = cur.Context.Clone()
		out.Context.Merge(rem.Context)
		return out, true, true, nil
	}
	c := core.Conflict{Collection: rem.Collection, Key: rem.Key, Local: *cur, Remote: rem}
	res, err := n.resolver(rem.Collection).Resolve(ctx, c)
	if err != nil {
		// A value the collection's resolver cannot merge (say, a profile
		// that is not JSON) must not stall sync forever: every device
		// falls back to the same deterministic last-writer-wins outcome.
		n.log.Warn("resolver failed; using last-writer-wins", "collection", rem.Collection, "err", err)
		if res, err = (conflict.LWW{}).Resolve(ctx, c); err != nil {
			return out, false, true, fmt.Errorf("resolve %s/%q: %w", rem.Collection, rem.Key, err)
		}
	}
	if res.Manual {
		// The host decides; until then this device keeps its version.
		n.raise(*cur, rem)
		return *cur, false, true, nil
	}
	win := *cur
	if conflict.Compare(rem, *cur) > 0 {
		win = rem
	}
	out = core.Record{
		Collection: rem.Collection,
		Key:        rem.Key,
		Value:      res.Value,
		Deleted:    res.Deleted,
		Timestamp:  win.Timestamp,
		Origin:     win.Origin,
		Seq:        win.Seq,
		Context:    cur.Context.Clone(),
		Summary:    win.Summary,
	}
	out.Context.Merge(rem.Context)
	if out.Deleted {
		out.Value = nil
	} else if out.Value == nil {
		out.Value = []byte{}
	}
	return out, true, true, nil
}

// resolver returns the Resolver of a collection (Config.Resolvers).
func (n *Replica) resolver(collection string) core.Resolver {
	return n.resolvers.Resolver(collection)
}
