package replica

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
)

// Replica incarnations.
//
// A changelog dot (Origin, Seq) must name one write, forever. A device whose
// store is an older copy (restored from a backup, a VM snapshot, a copied
// folder, or a second machine running a clone of the folder) would, if it
// went on counting from its version vector, give new writes dots that its
// peers already hold with other content: the peers skip them as replays and
// the device itself skips the older writes it no longer has. Nothing in a
// store can tell such a copy from the latest one: a copy is bit for bit
// what the latest store was at that moment, including any marker the node
// could leave in the same folder, and the other copies may be offline.
//
// So the sequence numbers belong to a replica incarnation, not to the
// device. Record.Origin, Change.Origin and the keys of version vectors are
// replica ids. Each time a node opens a store it mints a fresh replica id
// (lazily: at its first write that syncs, so opens that only read add
// nothing) and counts from 1 under it. Its dots therefore never collide
// with anything written under an earlier incarnation, by this copy or by
// any other copy of the same store. The earlier incarnations' writes stay
// valid; a restored device gets those it lacks from its peers through the
// ordinary delta path, since its version vector is lower for them.
//
// The first incarnation of a device, the one of the open that created its
// identity, uses the device id itself as replica id: no copy of that store
// can exist before the identity does. Every other replica id is
//
//	SHA-256("federation/replica/v1" || device id || 16-byte random nonce)
//
// announced by a record in the internal collection _fed.replicas (key: the
// replica id in hex; value: version byte 1, device id, nonce), written in
// the replica's first transaction. The mapping is self-certifying: any
// device recomputes the hash, so no announcement can attach an existing
// replica to another device. (Announcements are not signed, like every
// record: a trusted device could already forge writes under any origin.)
// Events and audit entries report the device, not the replica
// (Replica.OriginDevice).
//
// Cost: every incarnation that writes adds one entry to every version
// vector: 33-35 bytes in SyncHello and CaughtUp (id and uvarint counter),
// 32 bytes once per Changes frame plus 2-4 bytes per change in it, and 2-5
// bytes per record and changelog entry in the libSQL store (devices are
// numbered there), plus a devices-table row and a _fed.replicas record.
// Folding retired incarnations away is not implemented; see the README
// ("Backups and restores") for what it needs.
const (
	// ReplicasCollection holds the incarnation announcements (synced).
	ReplicasCollection = InternalPrefix + "replicas"
	metaReplica        = "node.replica" // the latest replica id minted here
	replicaDomain      = "federation/replica/v1"
	replicaNonceLen    = 16
	replicaVersion     = 1
)

// ErrBadReplica reports a _fed.replicas record that does not prove its
// replica id: a peer sent a forged or malformed incarnation announcement.
var ErrBadReplica = errors.New("replica announcement does not match its id")

// replicaID derives the replica id of one incarnation of device.
func replicaID(device core.DeviceID, nonce []byte) core.DeviceID {
	h := sha256.New()
	h.Write([]byte(replicaDomain))
	h.Write(device[:])
	h.Write(nonce)
	return core.DeviceID(h.Sum(nil))
}

// replicaMap maps replica ids to the devices that minted them. Entries are
// only added, and only once proven, so readers never see a wrong device.
type replicaMap struct {
	mu      sync.RWMutex
	m       map[core.DeviceID]core.DeviceID
	current core.DeviceID // the node's own current replica (Replica.Current)
}

func (rm *replicaMap) add(replica, device core.DeviceID) {
	rm.mu.Lock()
	if rm.m == nil {
		rm.m = map[core.DeviceID]core.DeviceID{}
	}
	rm.m[replica] = device
	rm.mu.Unlock()
}

func (rm *replicaMap) get(replica core.DeviceID) (core.DeviceID, bool) {
	rm.mu.RLock()
	defer rm.mu.RUnlock()
	d, ok := rm.m[replica]
	return d, ok
}

// Current returns the incarnation this node writes under: the device id in
// the open that created the device, else a replica minted at the first
// write since the node opened (zero until then). Version vectors, as in
// Stats, count this node's writes under it.
func (n *Replica) Current() core.DeviceID {
	n.replicas.mu.RLock()
	defer n.replicas.mu.RUnlock()
	return n.replicas.current
}

func (rm *replicaMap) setCurrent(id core.DeviceID) {
	rm.mu.Lock()
	rm.current = id
	rm.mu.Unlock()
}

// OriginDevice returns the device that made writes under origin (a
// Record.Origin or a version vector key: a replica id). An origin that is
// a device's first incarnation, or that this node has not learned, is
// returned unchanged.
func (n *Replica) OriginDevice(origin core.DeviceID) core.DeviceID {
	if d, ok := n.replicas.get(origin); ok {
		return d
	}
	return origin
}

// decodeReplica checks an announcement record and returns the replica and
// device it binds.
func decodeReplica(r core.Record) (replica, device core.DeviceID, err error) {
	if len(r.Value) != 1+len(device)+replicaNonceLen || r.Value[0] != replicaVersion {
		return replica, device, fmt.Errorf("%w: %d bytes", ErrBadReplica, len(r.Value))
	}
	copy(device[:], r.Value[1:])
	replica = replicaID(device, r.Value[1+len(device):])
	if hex.EncodeToString(replica[:]) != r.Key {
		return replica, device, fmt.Errorf("%w: key %.16s", ErrBadReplica, r.Key)
	}
	return replica, device, nil
}

// learnReplicas checks the announcements among recs (arriving from a peer,
// or read at start) and learns them; a forged one is a protocol error.
// Tombstones are let through (never unlearned): folding may delete
// announcements of retired incarnations one day.
func (n *Replica) learnReplicas(recs []core.Record) error {
	for _, r := range recs {
		if r.Collection != ReplicasCollection || r.Deleted {
			continue
		}
		replica, device, err := decodeReplica(r)
		if err != nil {
			return fmt.Errorf("%w: %w", core.ErrProtocol, err)
		}
		n.replicas.add(replica, device)
	}
	return nil
}

// loadReplicas learns every announcement the store holds.
func (n *Replica) loadReplicas(ctx context.Context) error {
	var recs []core.Record
	err := n.store.Scan(ctx, ReplicasCollection, core.KeyRange{}, func(r core.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err == nil {
		err = n.learnReplicas(recs)
	}
	if err != nil {
		return fmt.Errorf("load replicas: %w", err)
	}
	return nil
}

// mintReplica starts a new incarnation for this open of the store: a fresh
// replica id whose sequence numbers start at 1. It is recorded in the
// store's metadata before any write uses it (so the next open can find the
// last timestamp it issued). Called with writeMu, before the first write
// that syncs.
func (n *Replica) mintReplica(ctx context.Context) error {
	// Always the system's randomness, never Config.Rand: a test that
	// replays a seeded Rand on a restored copy would otherwise mint the
	// same replica twice, which is exactly the collision this prevents.
	nonce := make([]byte, replicaNonceLen)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return fmt.Errorf("mint replica: %w", err)
	}
	dev := n.dev
	id := replicaID(dev, nonce)
	// The clock first: the next open observes only the latest replica's
	// last write, so the writes of the previous one must be covered by
	// the saved clock even if this process dies before it closes.
	if err := SaveClock(ctx, n.store, n.hlc.Last()); err != nil {
		return fmt.Errorf("mint replica: %w", err)
	}
	if err := n.store.SetMeta(ctx, metaReplica, id[:]); err != nil {
		return fmt.Errorf("mint replica: %w", err)
	}
	n.replicas.add(id, dev)
	n.replicas.setCurrent(id)
	n.replica, n.seq = id, 0
	n.announce = append(append([]byte{replicaVersion}, dev[:]...), nonce...)
	n.log.Info("new replica incarnation", "replica", id.Short())
	return nil
}

// announceOp returns the announcement of the current incarnation when the
// next local transaction is its first (nil otherwise).
func (n *Replica) announceOp() *Op {
	if n.announce == nil || n.seq != 0 {
		return nil
	}
	return &Op{Collection: ReplicasCollection, Key: hex.EncodeToString(n.replica[:]), Value: n.announce}
}

// lastReplica returns the replica id minted by the store's latest open
// that wrote, if any.
func lastReplica(ctx context.Context, st core.Store) (core.DeviceID, bool) {
	b, err := st.Meta(ctx, metaReplica)
	if err != nil || len(b) != len(core.DeviceID{}) {
		return core.DeviceID{}, false
	}
	return core.DeviceID(b), true
}
