package federation

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/merkle"
)

// The commit-pipeline side of a Merkle repair (internal/syncer drives the
// protocol): merging the records a peer pushed, raising the version vector
// after its Repaired frame, and the trees a reconciler reads. With the
// report of a repair that does not settle, they need the write lock.

// treeFor returns a collection's tree, creating an empty one if needed, so
// that a reconciler can hold it across rounds.
func (n *Node) treeFor(coll string) *merkle.Tree {
	n.trees.mu.Lock()
	defer n.trees.mu.Unlock()
	t := n.trees.m[coll]
	if t == nil {
		t = merkle.New()
		n.trees.m[coll] = t
	}
	return t
}

// random returns the node's source of randomness.
func (n *Node) random() io.Reader {
	if n.cfg.Rand != nil {
		return n.cfg.Rand
	}
	return rand.Reader
}

// applyRecords merges record versions received in a repair, by causal
// context like changes, in one atomic commit. They carry no changelog
// entries: the sender's Repaired frame later raises the version vector.
func (n *Node) applyRecords(ctx context.Context, recs []core.Change) error {
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
	defer n.writeMu.Unlock()
	if err := n.alive(); err != nil {
		return err
	}
	n.observeRemote(maxOrigin, maxTS)
	plain := make([]core.Record, len(recs))
	for i := range recs {
		plain[i] = recs[i].Record
	}
	if len(recs) > 0 {
		if err := n.checkOps(ctx, recs[0].Origin, plain); err != nil {
			return err
		}
	}
	var b core.Batch
	var events []Event
	for _, r := range recs {
		if !n.cfg.policy(r.Collection).Syncs() {
			continue
		}
		var cur *core.Record
		got, err := n.store.Get(ctx, r.Collection, r.Key)
		switch {
		case err == nil:
			cur = &got
		case !errors.Is(err, core.ErrNotFound):
			return fmt.Errorf("repair: %w", err)
		}
		out, changed, _, err := n.merge(ctx, cur, r.Record)
		if err != nil {
			return err
		}
		if changed {
			b.Records = append(b.Records, out)
			events = append(events, Event{Kind: EventChange, Collection: out.Collection, Key: out.Key, Deleted: out.Deleted, Origin: n.OriginDevice(out.Origin), Timestamp: out.Timestamp})
		}
	}
	qEvents, settle := n.settleQueue(&b, maxTS)
	if len(b.Records) == 0 {
		return nil
	}
	err := n.commitStore(ctx, b)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	settle()
	n.afterCommit(b.Records)
	for _, e := range append(events, qEvents...) {
		n.events.publish(e)
	}
	return nil
}

// advance raises the version vector after a peer's repair.
func (n *Node) advance(ctx context.Context, vv core.VersionVector) error {
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	if err := n.alive(); err != nil {
		return err
	}
	if err := n.store.Commit(ctx, core.Batch{Advance: vv}); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	n.changed.notify()
	return nil
}

// reportUnsettled tells the host that repairs with peer did not make the
// records equal, and why as far as this device can tell.
func (n *Node) reportUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte) {
	var differ []string
	for c, r := range ours {
		if theirs[c] != r {
			differ = append(differ, c)
		}
	}
	for c := range theirs {
		if _, ok := ours[c]; !ok {
			differ = append(differ, c)
		}
	}
	sort.Strings(differ)
	reason := fmt.Sprintf("records differ after %d repairs at equal version vectors (a store that does not keep what repair installs, or a resolver that does not give the same result on every device)", tries)
	if queued := n.queuedIn(differ); queued > 0 {
		reason = fmt.Sprintf("%d conflicts wait for the host to resolve them (Node.Conflicts)", queued)
	}
	coll := ""
	if len(differ) > 0 {
		coll = differ[0]
	}
	n.health.repairsUnsettled.Add(1)
	n.log.Warn("merkle repair does not settle", "peer", peer.Short(), "collections", differ, "reason", reason)
	n.events.publish(Event{Kind: EventRepairUnsettled, Collection: coll, Origin: peer, Reason: reason})
}

// queuedIn counts the manual conflicts queued in collections.
func (n *Node) queuedIn(collections []string) int {
	in := map[string]bool{}
	for _, c := range collections {
		in[c] = true
	}
	n.writeMu.Lock()
	defer n.writeMu.Unlock()
	count := 0
	for k := range n.queue.byKey {
		if in[k.collection] {
			count++
		}
	}
	return count
}
