package federation

import (
	"context"
	"fmt"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/merkle"
)

// The node's side of the commit pipeline (internal/replica): the host API
// over it, the hooks the node registers on it, and the thin methods through
// which the rest of the package reaches it. Nothing here takes the write
// lock: the replica owns it.

// Digest is a Merkle root: equal roots of a collection on two devices prove
// that they hold identical records in it.
type Digest = merkle.Digest

// ReembedFunc is the host's hook for embeddings that a merge marked stale
// (two devices embedded different content under one id; the merged record
// keeps the winning content, flagged until re-embedded): it gets the
// decoded stale conflict.Embedding and returns the new vector; the node
// then writes conflict.Refresh(value, vector), which clears the flag on
// every device. It runs on a goroutine of the node, one call at a time,
// never under a lock, and may block on the host's model. See
// conflict.ReembedFunc for the whole contract.
type ReembedFunc = conflict.ReembedFunc

// Errors of the commit pipeline.
var (
	// ErrGap reports changes that do not follow on from what this device
	// holds for their origin: the sender skipped part of the origin's
	// changelog.
	ErrGap = replica.ErrGap
	// ErrCausality reports a change that arrived before a change it depends
	// on.
	ErrCausality = replica.ErrCausality
	// ErrBadReplica reports a _fed.replicas record that does not prove its
	// replica id: a peer sent a forged or malformed incarnation
	// announcement.
	ErrBadReplica = replica.ErrBadReplica
	// ErrNoConflict reports a conflict id that is not (or no longer) queued.
	ErrNoConflict = replica.ErrNoConflict
	// ErrReentrantWrite reports a call, made from inside the function given
	// to Node.Update, to a Node method that needs the node's write lock
	// (Put, Delete, Update, Resolve, Stats, Conflicts, the registry
	// operations, Close...). That lock is held until the function returns,
	// so the call would wait for itself forever; it fails at once instead.
	// Writes inside a transaction go through its Tx.
	ErrReentrantWrite = replica.ErrReentrantWrite
)

// internalPrefix starts the names of the SDK's own collections; hosts
// cannot write them.
const internalPrefix = replica.InternalPrefix

const replicasCollection = replica.ReplicasCollection // incarnation announcements

// internal reports whether a collection name is reserved for the SDK.
func internal(collection string) bool { return replica.Internal(collection) }

// publishReplica delivers an event of the pipeline to the subscribers.
func (n *Node) publishReplica(e replica.Event) {
	var k EventKind
	switch e.Kind {
	case replica.EventChange:
		k = EventChange
	case replica.EventConflict:
		k = EventConflict
	case replica.EventResolved:
		k = EventResolved
	case replica.EventClockDrift:
		k = EventClockDrift
	}
	n.publish(Event{Kind: k, Collection: e.Collection, Key: e.Key, Deleted: e.Deleted, Origin: e.Origin,
		Local: e.Local, Timestamp: e.Timestamp, ConflictID: e.ConflictID, Reason: e.Reason})
}

// Root returns the Merkle root of a collection's records (tombstones
// included). Two devices with equal roots hold identical records in it.
func (n *Node) Root(collection string) Digest { return n.c.Rep.Root(collection) }

// Roots returns the Merkle root of every host collection that syncs and
// holds records here (the SDK's own collections, under "_fed.", are left
// out; Root still answers for them).
func (n *Node) Roots() map[string]Digest {
	roots := n.c.Rep.Roots()
	for c := range roots {
		if internal(c) {
			delete(roots, c)
		}
	}
	return roots
}

// Replica returns the incarnation this node writes under: the device id in
// the open that created the device, else a replica minted at the first
// write since the node opened (zero until then). Version vectors, as in
// Stats, count this node's writes under it.
func (n *Node) Replica() DeviceID { return n.c.Rep.Current() }

// OriginDevice returns the device that made writes under origin (a
// Record.Origin or a version vector key: a replica id). An origin that is
// a device's first incarnation, or that this node has not learned, is
// returned unchanged.
func (n *Node) OriginDevice(origin DeviceID) DeviceID { return n.c.Rep.OriginDevice(origin) }

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
	Ours, Theirs Record
}

// Conflicts lists the conflicts waiting for the host, ordered by
// collection, key.
func (n *Node) Conflicts(ctx context.Context) ([]ConflictInfo, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	list, err := n.c.Rep.Conflicts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ConflictInfo, len(list))
	for i, ci := range list {
		out[i] = ConflictInfo(ci)
	}
	return out, nil
}

// Resolve settles a queued conflict with the host's decision: res.Value (one
// side's value or a merge of both), or a deletion when res.Deleted. It is
// written as a new version that covers both sides, so every other device
// holding the conflict settles it when the write arrives.
func (n *Node) Resolve(ctx context.Context, id string, res Resolution) error {
	var target ConflictInfo
	found := false
	list, err := n.Conflicts(ctx)
	if err != nil {
		return err
	}
	for _, ci := range list {
		if ci.ID == id {
			target, found = ci, true
		}
	}
	if !found {
		return fmt.Errorf("resolve %s: %w", id, ErrNoConflict)
	}
	return n.Update(ctx, func(tx *Tx) error {
		if res.Deleted {
			return tx.Delete(target.Collection, target.Key)
		}
		return tx.Put(target.Collection, target.Key, res.Value)
	})
}
