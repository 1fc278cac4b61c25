package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// The one commit pipeline. Every entry point (commitLocal for local
// transactions, ApplyRemote for a peer's transactions, ApplyRecords for
// record versions received in a Merkle repair, Advance after a repair)
// builds a batch in its own way, then hands it to commit, which is the
// only code that writes to the store: it settles the conflict queue,
// commits with the Merkle trees in step, runs the observers, wakes the
// senders and publishes the events, always in that order.

// Op is one write of a local transaction.
type Op struct {
	Collection, Key string
	Value           []byte
	Deleted         bool
	// Summary marks the write as a summary (Tx.PutSummary): it travels
	// whole to devices with the summary policy (core.ModeSummary).
	Summary bool
}

type txKey struct{ collection, key string }

// commit is the end of every write, whatever its entry point. ts stamps
// the conflict queue's bookkeeping records; events are published after the
// observers ran. A batch that ends up empty commits nothing. Called with
// writeMu.
func (n *Replica) commit(ctx context.Context, src Source, b core.Batch, events []Event, ts core.Timestamp) error {
	qEvents, settle := n.settleQueue(&b, ts)
	if len(b.Records) == 0 && len(b.Changes) == 0 && len(b.Advance) == 0 {
		return nil
	}
	stubs, err := n.noteStubs(ctx, &b)
	if err != nil {
		return err
	}
	if err := n.commitStore(ctx, b); err != nil {
		return err
	}
	n.wantedCommitted(b.Records)
	settle()
	n.afterCommit(src, b.Records)
	if len(stubs) > 0 {
		n.after = append(n.after, func() { n.wantStubs(stubs) })
	}
	for _, e := range events {
		n.publish(e)
	}
	for _, e := range qEvents {
		n.publish(e)
	}
	return nil
}

// CommitLocked stamps and commits one local transaction, for a caller that
// holds the write lock through Exclusive. It panics when the lock is free
// (a programmer error: the commit would race with every other writer).
func (n *Replica) CommitLocked(ctx context.Context, ops []Op) error {
	if n.writeMu.TryLock() {
		n.writeMu.Unlock()
		panic(errNotHeld)
	}
	return n.commitLocal(ctx, ops)
}

// commitLocal stamps and commits one local transaction. Called with writeMu.
func (n *Replica) commitLocal(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	ts, err := n.hlc.Now()
	if err != nil {
		return err
	}
	vv, err := n.store.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	synced := 0
	for _, op := range ops {
		if n.policy(op.Collection).Syncs() {
			synced++
		}
	}
	if synced > 0 && n.replica.IsZero() {
		if err := n.mintReplica(ctx); err != nil {
			return err
		}
	}
	if a := n.announceOp(); a != nil && synced > 0 {
		// A new incarnation announces itself in its first transaction, so
		// that every device that gets its writes can name their device.
		ops = append(ops[:len(ops):len(ops)], *a)
		synced++
	}
	stamps, err := n.stampAfter(ctx, ops, ts)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	self, dev := n.replica, n.dev
	if ops, err = n.prepareOps(ctx, ops, ts, dev); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	first := n.seq + 1
	b := core.Batch{Records: make([]core.Record, len(ops))}
	seq := n.seq
	for i, op := range ops {
		rec := core.Record{
			Collection: op.Collection,
			Key:        op.Key,
			Value:      op.Value,
			Deleted:    op.Deleted,
			Timestamp:  ts,
			Origin:     dev,
			Summary:    op.Summary && !op.Deleted,
		}
		if stamps != nil && stamps[i] != 0 {
			rec.Timestamp = stamps[i]
		}
		if n.policy(op.Collection).Syncs() {
			rec.Origin = self
			// A local write causally follows everything this device holds,
			// so its context is the node's version vector plus its own dot.
			seq++
			rec.Seq = seq
			rec.Context = vv.Clone()
			n.early.widen(rec.Context, op.Collection, op.Key)
			rec.Context[self] = seq
			b.Changes = append(b.Changes, core.Change{Record: rec, TxnFirst: first, TxnLen: uint32(synced)})
		}
		// Local-only collections never leave the device: their writes take
		// no sequence number and no changelog entry.
		b.Records[i] = rec
	}
	events := make([]Event, 0, len(b.Records))
	for _, r := range b.Records {
		if !Internal(r.Collection) {
			events = append(events, Event{Kind: EventChange, Collection: r.Collection, Key: r.Key, Deleted: r.Deleted, Origin: dev, Local: true, Timestamp: r.Timestamp})
		}
	}
	if err := n.commit(ctx, SourceLocal, b, events, ts); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	n.early.prune(vv)
	n.seq = seq
	if seq > 0 {
		n.announce = nil // announced (or the first incarnation: nothing to)
	}
	return nil
}

// prepareOps completes the writes of collections whose resolver needs it
// (see the conflict package, Deletions in join collections): the deletion
// of a live record of a conflict.Remover (union, chronological log,
// profile, embeddings) is written as its value with everything it holds removed,
// since a tombstone there is the merge's empty state, which cannot remove
// what the deleting device saw while keeping what it did not whatever the
// delivery order; a write to a conflict.Preparer (embeddings) is stamped
// against the current value. A value the resolver cannot decode is written
// as given (merges of it fall back to last-writer-wins). ops is not
// modified. Called with writeMu.
func (n *Replica) prepareOps(ctx context.Context, ops []Op, ts core.Timestamp, dev core.DeviceID) ([]Op, error) {
	out, cloned := ops, false
	for i, op := range ops {
		if !n.policy(op.Collection).Syncs() {
			continue
		}
		r := n.resolver(op.Collection)
		rm, removes := conflict.RemoverFor(r, op.Collection)
		pr, prepares := conflict.PreparerFor(r, op.Collection)
		if (op.Deleted && !removes) || (!op.Deleted && !prepares) {
			continue
		}
		var current []byte
		cur, err := n.store.Get(ctx, op.Collection, op.Key)
		switch {
		case errors.Is(err, core.ErrNotFound):
		case err != nil:
			return nil, err
		case !cur.Deleted:
			current = cur.Value
		}
		var v []byte
		if op.Deleted {
			if current == nil {
				continue // nothing to remove: a tombstone
			}
			v, err = rm.Remove(current, ts, dev)
		} else {
			v, err = pr.Prepare(current, op.Value, ts, dev)
		}
		if err != nil {
			n.log.Debug("write left as given", "collection", op.Collection, "err", err)
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(ops), true
		}
		out[i] = Op{Collection: op.Collection, Key: op.Key, Value: v, Summary: op.Summary}
	}
	return out, nil
}

// ApplyRecords merges record versions received in a repair, by causal
// context like changes, in one atomic commit. They carry no changelog
// entries: the sender's Repaired frame later raises the version vector
// (Advance). Records of collections that do not sync here are ignored.
func (n *Replica) ApplyRecords(ctx context.Context, recs []core.Change) error {
	var maxTS core.Timestamp
	var maxOrigin core.DeviceID
	for _, r := range recs {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w: record: %w", core.ErrProtocol, err)
		}
		if r.Origin.IsZero() || r.Seq == 0 || r.Context[r.Origin] < r.Seq || (r.Deleted && len(r.Value) > 0) {
			return fmt.Errorf("%w: malformed record %s/%q", core.ErrProtocol, r.Collection, r.Key)
		}
		if r.Timestamp > maxTS {
			maxTS, maxOrigin = r.Timestamp, r.Origin
		}
	}
	n.writeMu.Lock()
	defer n.unlock()
	if err := n.alive(); err != nil {
		return err
	}
	n.observeRemote(maxOrigin, maxTS)
	plain := make([]core.Record, len(recs))
	for i := range recs {
		plain[i] = recs[i].Record
	}
	if len(recs) > 0 {
		if err := n.check(ctx, recs[0].Origin, plain); err != nil {
			return err
		}
	}
	synced := make([]core.Change, 0, len(recs))
	for _, r := range recs {
		if n.policy(r.Collection).Syncs() {
			synced = append(synced, r)
		}
	}
	b, events, _, err := n.mergeChanges(ctx, synced, false)
	if err != nil {
		return err
	}
	vv, err := n.store.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if err := n.commit(ctx, SourceRepair, b, events, maxTS); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	// What this device now holds ahead of its vector: the versions it
	// received (whether they won the merge or not: a later local write
	// follows them all) and the outcomes.
	for _, r := range synced {
		n.early.note([]core.Record{r.Record}, vv)
	}
	n.early.note(b.Records, vv)
	return nil
}

// Advance raises the version vector after a peer's repair.
func (n *Replica) Advance(ctx context.Context, vv core.VersionVector) error {
	n.writeMu.Lock()
	defer n.unlock()
	if err := n.alive(); err != nil {
		return err
	}
	if err := n.commit(ctx, SourceAdvance, core.Batch{Advance: vv}, nil, 0); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	return nil
}

// check is the ingress check of records arriving from a peer (from: their
// origin): replica announcements must prove their ids and are learned
// (replica.go), then Config.Check vets the rest. Called with writeMu.
func (n *Replica) check(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	if err := n.learnReplicas(recs); err != nil {
		n.record(ctx, audit.Refusal(n.OriginDevice(from), "forged-replica"))
		return err
	}
	if n.cfg.Check != nil {
		return n.cfg.Check(ctx, from, recs)
	}
	return nil
}

// observeRemote folds the latest timestamp of a batch received from a
// trusted peer into the clock, under the drift rule of core.HLC: the batch
// is accepted whatever its timestamps, the clock follows them only up to
// the bound, and a timestamp beyond it is logged, counted and published as
// EventClockDrift. Called with writeMu held.
func (n *Replica) observeRemote(origin core.DeviceID, ts core.Timestamp) {
	beyond := n.hlc.Receive(ts)
	n.noteAhead(ts)
	if beyond <= 0 {
		return
	}
	n.clockDrift.Add(1)
	ahead := time.Duration(ts.Millis()-n.cfg.Clock.Now().UnixMilli()) * time.Millisecond
	n.log.Warn("peer timestamps beyond the clock drift bound; accepted, clock not followed",
		"origin", origin.Short(), "ahead", ahead.Round(time.Second), "limit", n.cfg.MaxClockDrift)
	n.publish(Event{Kind: EventClockDrift, Origin: origin, Timestamp: ts,
		Reason: "timestamps " + ahead.Round(time.Second).String() + " ahead of this device's clock"})
}
