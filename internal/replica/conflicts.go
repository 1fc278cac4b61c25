package replica

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// The manual conflict queue. A collection whose Resolver answers
// Resolution{Manual: true} keeps each device's own version and queues the
// conflict for the host: Conflicts lists it, Subscribe reports it
// (EventConflict), and Resolve settles it with a write whose causal context
// covers both versions. That write travels like any other and settles the
// same conflict on every other device (EventResolved there too). Any later
// write of the key that covers both versions settles it as well.
//
// Queued conflicts live in a local-only internal collection, committed in
// the same transaction as the changes that raised or settled them, so the
// queue survives a crash exactly as the data does.

// InternalPrefix starts the names of the SDK's own collections; hosts
// cannot write them.
const InternalPrefix = "_fed."

// ConflictsCollection holds the manual conflict queue (local only).
const ConflictsCollection = InternalPrefix + "conflicts"

// ErrNoConflict reports a conflict id that is not (or no longer) queued.
var ErrNoConflict = errors.New("no such conflict")

// ConflictInfo is one queued conflict: two concurrent versions of a record
// that the collection's resolver left to the host.
type ConflictInfo struct {
	// ID identifies the conflict; it is the same on every device that
	// holds it.
	ID         string
	Collection string
	Key        string
	// Ours is the version this device keeps until the conflict is settled;
	// Theirs is the concurrent version from another device.
	Ours, Theirs core.Record
}

// conflictID derives an id from the two versions, independent of which is
// ours, so both devices of a conflict name it alike.
func conflictID(collection, key string, a, b core.Record) string {
	if a.Origin.Compare(b.Origin) > 0 || (a.Origin == b.Origin && a.Seq > b.Seq) {
		a, b = b, a
	}
	h := sha256.New()
	h.Write([]byte(collection))
	h.Write([]byte{0})
	h.Write([]byte(key))
	for _, r := range []core.Record{a, b} {
		h.Write(r.Origin[:])
		h.Write(binary.BigEndian.AppendUint64(nil, r.Seq))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(r.Timestamp)))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// queue is the in-memory index of the conflict queue, guarded by the
// node's write lock (every change to it happens inside a commit).
type queue struct {
	byKey map[txKey]ConflictInfo
	// raised collects conflicts found while merging the batch being built.
	raised []ConflictInfo
}

// loadQueue reads the queued conflicts at start.
func (n *Replica) loadQueue(ctx context.Context) error {
	n.queue.byKey = map[txKey]ConflictInfo{}
	return n.store.Scan(ctx, ConflictsCollection, core.KeyRange{}, func(r core.Record) error {
		ci, err := decodeConflict(r)
		if err != nil {
			return fmt.Errorf("load conflict queue: %w", err)
		}
		n.queue.byKey[txKey{ci.Collection, ci.Key}] = ci
		return nil
	})
}

// raise notes a manual conflict found while merging (write lock held).
func (n *Replica) raise(ours, theirs core.Record) {
	id := conflictID(ours.Collection, ours.Key, ours, theirs)
	n.queue.raised = append(n.queue.raised, ConflictInfo{ID: id, Collection: ours.Collection, Key: ours.Key, Ours: ours, Theirs: theirs})
}

// settleQueue adds to b the queue entries for the conflicts raised while
// building it, and tombstones for queued conflicts that b's records settle
// (a version covering both sides). It returns the events to publish after
// the commit and applies the index changes through the returned function,
// to be called once the commit succeeded. Called with the write lock.
func (n *Replica) settleQueue(b *core.Batch, ts core.Timestamp) (events []Event, apply func()) {
	raised := n.queue.raised
	n.queue.raised = nil
	add := map[txKey]ConflictInfo{}
	var drop []txKey
	var entries []audit.Entry
	var final map[txKey]core.VersionVector // each key's outcome in b, for the raised ones
	if len(raised) > 0 {
		final = make(map[txKey]core.VersionVector, len(b.Records))
		for _, r := range b.Records {
			final[txKey{r.Collection, r.Key}] = r.Context
		}
	}
	settles := b.Records
	if len(n.queue.byKey) == 0 {
		settles = nil // nothing queued for b to settle
	}
	for _, r := range settles {
		k := txKey{r.Collection, r.Key}
		ci, ok := n.queue.byKey[k]
		if !ok || !covers(r.Context, ci.Ours.Context) || !covers(r.Context, ci.Theirs.Context) {
			continue
		}
		drop = append(drop, k)
		entries = append(entries, audit.ConflictResolved(n.OriginDevice(r.Origin), ci.Collection, "manual"))
		b.Records = append(b.Records, core.Record{Collection: ConflictsCollection, Key: ci.ID, Deleted: true, Timestamp: ts, Origin: n.dev})
		events = append(events, Event{Kind: EventResolved, Collection: ci.Collection, Key: ci.Key, ConflictID: ci.ID, Timestamp: ts})
	}
	for _, ci := range raised {
		k := txKey{ci.Collection, ci.Key}
		if old, ok := n.queue.byKey[k]; ok && old.ID == ci.ID {
			continue // already queued (a repeated delivery or repair)
		}
		if c, ok := final[k]; ok && covers(c, ci.Ours.Context) && covers(c, ci.Theirs.Context) {
			// Settled within this batch: a later change of the same batch
			// (the resolution made on the device that raised it first)
			// covers both sides.
			entries = append(entries, audit.ConflictDetected(n.OriginDevice(ci.Theirs.Origin), ci.Collection),
				audit.ConflictResolved(n.OriginDevice(ci.Theirs.Origin), ci.Collection, "manual"))
			continue
		}
		add[k] = ci
		entries = append(entries, audit.ConflictDetected(n.OriginDevice(ci.Theirs.Origin), ci.Collection))
		b.Records = append(b.Records, core.Record{Collection: ConflictsCollection, Key: ci.ID, Value: encodeConflict(ci), Timestamp: ts, Origin: n.dev})
		events = append(events, Event{Kind: EventConflict, Collection: ci.Collection, Key: ci.Key, ConflictID: ci.ID, Timestamp: ts})
	}
	return events, func() {
		for _, e := range entries {
			n.record(context.Background(), e)
		}
		for _, k := range drop {
			delete(n.queue.byKey, k)
		}
		for k, ci := range add {
			n.queue.byKey[k] = ci
		}
	}
}

// covers reports whether context a includes everything in b.
func covers(a, b core.VersionVector) bool {
	o := a.Compare(b)
	return o == core.After || o == core.Equal
}

func encodeConflict(ci ConflictInfo) []byte {
	return wire.AppendChanges(nil, []core.Change{
		{Record: ci.Ours, TxnFirst: ci.Ours.Seq, TxnLen: 1},
		{Record: ci.Theirs, TxnFirst: ci.Theirs.Seq, TxnLen: 1},
	})
}

func decodeConflict(r core.Record) (ConflictInfo, error) {
	cs, err := wire.DecodeChanges(r.Value)
	if err != nil || len(cs) != 2 {
		return ConflictInfo{}, fmt.Errorf("%w: queued conflict %s", core.ErrCorrupt, r.Key)
	}
	return ConflictInfo{ID: r.Key, Collection: cs[0].Collection, Key: cs[0].Key, Ours: cs[0].Record, Theirs: cs[1].Record}, nil
}

// Conflicts lists the conflicts waiting for the host, ordered by
// collection, key. It takes the write lock (ErrReentrantWrite from inside
// an Update callback).
func (n *Replica) Conflicts(ctx context.Context) ([]ConflictInfo, error) {
	if err := n.lockWrite(ctx, "conflicts"); err != nil {
		return nil, err
	}
	defer n.unlock()
	out := make([]ConflictInfo, 0, len(n.queue.byKey))
	for _, ci := range n.queue.byKey {
		out = append(out, ci)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Collection != out[j].Collection {
			return out[i].Collection < out[j].Collection
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// QueuedIn counts the manual conflicts queued in collections.
func (n *Replica) QueuedIn(collections []string) int {
	in := map[string]bool{}
	for _, c := range collections {
		in[c] = true
	}
	n.writeMu.Lock()
	defer n.unlock()
	count := 0
	for k := range n.queue.byKey {
		if in[k.collection] {
			count++
		}
	}
	return count
}

// Internal reports whether a collection name is reserved for the SDK.
func Internal(collection string) bool { return strings.HasPrefix(collection, InternalPrefix) }
