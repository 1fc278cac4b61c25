package federation

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// DBFile is the name of the default store's file inside Config.Dir.
const DBFile = "federation.db"

// LockFile is the name of the file a node locks in Config.Dir for as long
// as it runs (see Config.Dir). It also names the device the directory
// belongs to, once the device's identity exists.
const LockFile = "federation.lock"

// Node is one device's handle on the user's federated data. It is safe for
// concurrent use. Build it with New and release it with Close.
type Node struct {
	cfg Config
	c   *engine.Core // the store, the identity, the rooms and their wiring

	events *engine.Hub[Event]
	health health // counters of conditions the host should hear of

	blobs nodeBlobs // the media blob store (blob.go; lane h26)

	closeOnce sync.Once
	closeErr  error
}

// New builds a Node from cfg: it validates a copy of cfg (ErrInvalidConfig),
// opens the store (creating the libSQL file in cfg.Dir by default), and
// loads this device's identity, creating it on first start. It does no
// network I/O.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	dir, err := engine.LockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	st := cfg.Store
	var key []byte // the at-rest key, for the store and the blob store
	if st == nil {
		key, err = cfg.Encryption.key(ctx)
		if err != nil {
			_ = dir.Release()
			return nil, err
		}
		st, err = libsqlstore.Open(ctx, filepath.Join(cfg.Dir, DBFile), libsqlstore.Options{Logger: cfg.Logger, Key: key, FullSync: cfg.FullSync})
		if err != nil {
			_ = dir.Release()
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	n, err := newNodeIn(ctx, cfg, st, dir)
	if err != nil {
		_ = st.Close()
		_ = dir.Release()
		return nil, err
	}
	if err := n.openBlobs(cfg.Dir, key); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// newNodeIn builds the node on st once dir (nil: no Dir) accepts st's
// identity, and records that identity in dir.
func newNodeIn(ctx context.Context, cfg Config, st Store, dir *engine.DirGuard) (*Node, error) {
	if err := dir.Check(ctx, st); err != nil {
		return nil, err
	}
	n, err := newNode(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	if err := dir.Record(n.DeviceID()); err != nil {
		_ = n.Close() // closes st; closing it again is harmless
		return nil, err
	}
	n.c.Dir = dir
	return n, nil
}

func newNode(ctx context.Context, cfg Config, st Store) (*Node, error) {
	n := &Node{cfg: cfg, events: engine.NewHub[Event](cfg.Events.Buffer)}
	var marker string // a restore by Restore is honoured only on the default store in Dir
	if cfg.Store == nil && cfg.Dir != "" {
		marker = filepath.Join(cfg.Dir, RestoredFile)
	}
	c, err := engine.Open(ctx, engine.Options{
		Name: cfg.Device.Name, Type: cfg.devType, Device: cfg.Device, Clock: cfg.Clock, MaxClockDrift: cfg.MaxClockDrift,
		SyncTimeout: cfg.SyncTimeout, Limits: cfg.Network.Limits, Logger: cfg.Logger, Rand: cfg.Rand,
		Policy: n.cfg.policy, Planner: n.cfg.planner, Collections: cfg.Collections, Reembed: cfg.Reembed,
		RestoreMarker: marker, Publish: n.publishReplica, Tampered: n.tampered, SelfRevoked: n.selfRevoked, Unsettled: n.reportUnsettled,
		Discovery: n.discoveryOptions(), Progress: n.publishProgress,
	}, st)
	if err != nil {
		return nil, err
	}
	n.c = c
	return n, nil
}

// DeviceID returns this device's id.
func (n *Node) DeviceID() DeviceID { return n.c.Ident.DeviceID() }

// PublicKey returns this device's public key.
func (n *Node) PublicKey() PublicKey { return n.c.Ident.PublicKey() }

// Policy returns the policy in force for a collection.
func (n *Node) Policy(collection string) Policy { return n.cfg.policy(collection) }

// Put writes value under (collection, key).
func (n *Node) Put(ctx context.Context, collection, key string, value []byte) error {
	return n.Update(ctx, func(tx *Tx) error { return tx.Put(collection, key, value) })
}

// Delete writes a tombstone for (collection, key) (a removal in some
// collections: see Tx.Delete). Deleting a missing key is not an error.
func (n *Node) Delete(ctx context.Context, collection, key string) error {
	return n.Update(ctx, func(tx *Tx) error { return tx.Delete(collection, key) })
}

// Get returns the current value of (collection, key), or an error wrapping
// ErrNotFound when it is absent or deleted, or ErrNotFetched when this
// device holds it as a stub (selective sync: see Fetch). The slice belongs
// to the caller.
func (n *Node) Get(ctx context.Context, collection, key string) ([]byte, error) {
	r, err := n.GetRecord(ctx, collection, key)
	if err != nil {
		return nil, err
	}
	if r.Deleted {
		return nil, fmt.Errorf("get %s/%q: %w", collection, key, ErrNotFound)
	}
	if r.Stub {
		return nil, fmt.Errorf("get %s/%q: %w", collection, key, ErrNotFetched)
	}
	return r.Value, nil
}

// GetRecord returns the current version of (collection, key) with its
// metadata; tombstones are returned with Deleted set, stubs with Stub set
// and no value (Record.Size and Record.Digest describe the value either
// way).
func (n *Node) GetRecord(ctx context.Context, collection, key string) (Record, error) {
	if err := n.checkCollection(collection); err != nil {
		return Record{}, err
	}
	return n.c.Get(ctx, collection, key)
}

// Scan calls fn for each live record of collection in r (tombstones only if
// r.IncludeDeleted), in ascending key order, until fn returns an error.
func (n *Node) Scan(ctx context.Context, collection string, r KeyRange, fn func(Record) error) error {
	if err := n.checkCollection(collection); err != nil {
		return err
	}
	return n.c.Scan(ctx, collection, r, fn)
}

// Update runs fn in a transaction. Its writes are committed atomically when
// fn returns nil, and discarded when it returns an error (which Update
// returns) or panics; a failed commit also leaves nothing behind. Reads in fn
// see the committed state plus fn's own writes. Local transactions are
// serialised, so keep fn short.
//
// fn holds this node's write lock while it runs, so it must write only
// through tx. A call from fn to a Node method that takes the write lock
// (Put, Delete, Update, Resolve, Stats, Conflicts, the registry operations,
// Close) fails at once with an error wrapping ErrReentrantWrite instead of
// waiting for itself; so does such a call made with tx.Context() (or a
// context derived from it) from any goroutine while fn runs. Calls from
// other goroutines with other contexts wait for fn, as any concurrent
// writer does. See lockWrite in internal/replica for the exact rule.
func (n *Node) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := n.alive(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return n.c.Rep.Update(ctx, "update", func(tctx context.Context) ([]replica.Op, error) {
		tx := &Tx{ctx: tctx, node: n}
		defer tx.buf.Done()
		if err := fn(tx); err != nil {
			return nil, err
		}
		return tx.buf.Ops(), nil
	})
}

// Stats is a snapshot of a node's counters.
type Stats struct {
	Device        DeviceID
	Store         StoreStats
	VersionVector VersionVector
	Subscribers   int
	EventsDropped uint64
	// ClockDrift counts received batches whose timestamps lay beyond
	// Config.MaxClockDrift (each also raised EventClockDrift).
	ClockDrift uint64
	// RepairsUnsettled counts peers and states for which Merkle repair did
	// not settle after repeated tries (each also raised
	// EventRepairUnsettled).
	RepairsUnsettled uint64
	// AuditTampered counts detections of a rewritten or truncated audit
	// history, this device's or a peer's (each also raised
	// EventAuditTampered; see Node.VerifyAudit).
	AuditTampered uint64
	// Discovery says where each known device was last seen and why it is
	// not connected.
	Discovery DiscoveryStats
	// Sync is how the sync towards each peer stands (see SyncProgress).
	Sync SyncStats
	// Queues is what waits on this node and what it refused.
	Queues QueueStats
}

// Stats returns a snapshot of the node's counters. It is taken between
// commits (it waits for one in progress), so whatever its version vector
// covers is already reflected in Root, Roots and the node's events.
func (n *Node) Stats(ctx context.Context) (Stats, error) {
	ss, vv, err := n.c.StoreState(ctx)
	if err != nil {
		return Stats{}, err
	}
	subs, dropped := n.events.Counts()
	disc, err := n.discoveryStats(ctx)
	if err != nil {
		return Stats{}, err
	}
	sync, err := n.syncStats(ctx)
	if err != nil {
		return Stats{}, err
	}
	queues, err := n.queueStats(ctx)
	if err != nil {
		return Stats{}, err
	}
	return Stats{Queues: queues, Discovery: disc, Device: n.DeviceID(), Store: ss, VersionVector: vv, Subscribers: subs, EventsDropped: dropped,
		ClockDrift: n.c.Rep.ClockDrift(), RepairsUnsettled: n.health.repairsUnsettled.Load(),
		AuditTampered: n.c.Anchor.Detected(), Sync: sync}, nil
}

// Close stops everything the node started, waits for it, ends every
// subscription and closes the store. It is idempotent; later calls return
// the first call's result. Called from inside an Update callback, it
// closes nothing and returns an error wrapping ErrReentrantWrite (it would
// wait for that callback forever).
func (n *Node) Close() error {
	if n.c.Rep.InUpdate() {
		return fmt.Errorf("close: %w", ErrReentrantWrite)
	}
	n.closeOnce.Do(func() { n.closeErr = n.c.Close(n.closeLast) })
	return n.closeErr
}

func (n *Node) alive() error { return n.c.Alive() }

// Now returns a fresh hybrid logical clock reading from this device's
// clock: for hosts that stamp parts of a value themselves (profile fields,
// conversation messages) so that they order with every other write.
func (n *Node) Now() (Timestamp, error) { return n.c.HLC.Now() }
