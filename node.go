package federation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// DBFile is the name of the default store's file inside Config.Dir.
const DBFile = "federation.db"

// Node is one device's handle on the user's federated data. It is safe for
// concurrent use. Build it with New and release it with Close.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store Store
	ident *identity.Identity
	hlc   *core.HLC

	// backup is the store when it can copy itself (nil: it cannot).
	backup core.BackupStore

	// writeMu serialises local writes: sequence numbers and causal contexts
	// are assigned under it, and Update holds it for the whole transaction.
	writeMu  sync.Mutex
	activeTx atomic.Pointer[Tx] // the transaction whose function is running (see lockWrite)
	// replica is the incarnation this open writes under (replica.go): zero
	// until the first write that syncs mints one, or the device id for the
	// open that created the identity. seq is the last sequence number used
	// under it; announce is the pending announcement of a minted replica.
	replica  core.DeviceID
	seq      uint64
	announce []byte
	// ahead is the latest timestamp this node holds that its clock did not
	// follow (a peer's, beyond the drift bound): while the clock reads at or
	// below it, a local write may supersede a version stamped later than
	// the write's own reading (see stampAfter). Under writeMu; persisted.
	ahead    core.Timestamp
	replicas replicaMap // replica id -> device, for events and audit

	events  *hub
	trees   trees     // Merkle trees of the collections that sync
	queue   queue     // manual conflicts waiting for the host (under writeMu)
	changed *notifier // woken after every commit

	peers *peers.Manager // sessions: dial, accept, redial, cut-off (peerlink.go)

	trust       *trust             // who may hold a session (device registry)
	audit       *audit.Log         // tamper-evident log of every sync operation
	reembed     chan reembedJob    // stale vectors waiting for Config.Reembed
	stopReembed context.CancelFunc // stops the re-embed loop
	reg         *registry.State    // replicated device registry (nil: no mesh yet); under writeMu
	pendingOps  []registry.Op      // operations held until the mesh's genesis arrives
	pairMu      sync.Mutex
	invites     invitations // open pairing invitations
	netMu       sync.Mutex
	tr          Transport          // nil until Start
	runCtx      context.Context    // lives until the network stops
	stopNet     context.CancelFunc // stops the network

	dir    *dirGuard // lock on Config.Dir (nil without one)
	health health    // counters of conditions the host should hear of
	anchor anchor    // signed audit heads and tamper detection (auditheads.go)

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
	wg        sync.WaitGroup
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
	dir, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	st := cfg.Store
	if st == nil {
		key, err := cfg.Encryption.key(ctx)
		if err != nil {
			_ = dir.release()
			return nil, err
		}
		st, err = libsqlstore.Open(ctx, filepath.Join(cfg.Dir, DBFile), libsqlstore.Options{Logger: cfg.Logger, Key: key})
		if err != nil {
			_ = dir.release()
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	n, err := newNodeIn(ctx, cfg, st, dir)
	if err != nil {
		_ = st.Close()
		_ = dir.release()
		return nil, err
	}
	return n, nil
}

func newNode(ctx context.Context, cfg Config, st Store) (*Node, error) {
	_, err := st.Meta(ctx, identity.MetaKey)
	created := errors.Is(err, core.ErrNotFound)
	ident, err := identity.LoadOrCreate(ctx, st, cfg.Rand)
	if err != nil {
		return nil, err
	}
	if err := saveDeviceInfo(ctx, st, cfg.Device); err != nil {
		return nil, err
	}
	vv, err := st.VersionVector(ctx)
	if err != nil {
		return nil, fmt.Errorf("load version vector: %w", err)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("device", ident.DeviceID().Short()),
		store:   st,
		ident:   ident,
		hlc:     core.NewHLC(cfg.Clock, cfg.MaxClockDrift),
		events:  newHub(cfg.Events.Buffer),
		changed: newNotifier(),

		closed: make(chan struct{}),
	}
	n.peers = n.newPeers()
	n.backup, _ = st.(core.BackupStore)
	if created && vv[ident.DeviceID()] == 0 {
		// The identity was born in this open, so no other copy of this
		// store can exist yet: the first incarnation is the device itself.
		// Every later open mints a replica at its first write (replica.go).
		n.replica = ident.DeviceID()
		n.replicas.setCurrent(n.replica)
	}
	// Never reuse a timestamp this device already issued, even if the clock
	// went backwards while the node was down: observe the last write of the
	// first incarnation and of the latest one minted.
	own := []core.DeviceID{ident.DeviceID()}
	if r, ok := lastReplica(ctx, st); ok {
		own = append(own, r)
	}
	for _, r := range own {
		if vv[r] == 0 {
			continue
		}
		err := st.Changes(ctx, r, vv[r]-1, 1, func(c core.Change) error {
			n.hlc.Observe(c.Timestamp)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load clock: %w", err)
		}
	}
	if ts, err := loadClock(ctx, st); err == nil {
		n.hlc.Observe(ts)
	}
	if ts, err := loadAhead(ctx, st); err == nil {
		n.ahead = ts
	}
	if err := n.loadTrees(ctx); err != nil {
		return nil, err
	}
	if err := n.loadQueue(ctx); err != nil {
		return nil, err
	}
	if err := n.loadReplicas(ctx); err != nil {
		return nil, err
	}
	if n.trust, err = newTrust(ctx, st); err != nil {
		return nil, err
	}
	if n.audit, err = openAudit(ctx, st, cfg.Clock); err != nil {
		return nil, err
	}
	if err := n.loadRegistry(ctx); err != nil {
		return nil, err
	}
	n.startAnchor(ctx)
	if cfg.Reembed != nil {
		n.reembed = make(chan reembedJob, reembedQueue)
		loopCtx, stop := context.WithCancel(context.Background())
		n.stopReembed = stop
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.reembedLoop(loopCtx)
		}()
	}
	n.log.Info("node ready", "name", cfg.Device.Name)
	return n, nil
}

// DeviceID returns this device's id.
func (n *Node) DeviceID() DeviceID { return n.ident.DeviceID() }

// PublicKey returns this device's public key.
func (n *Node) PublicKey() PublicKey { return n.ident.PublicKey() }

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
// ErrNotFound when it is absent or deleted. The slice belongs to the caller.
func (n *Node) Get(ctx context.Context, collection, key string) ([]byte, error) {
	r, err := n.GetRecord(ctx, collection, key)
	if err != nil {
		return nil, err
	}
	if r.Deleted {
		return nil, fmt.Errorf("get %s/%q: %w", collection, key, ErrNotFound)
	}
	return r.Value, nil
}

// GetRecord returns the current version of (collection, key) with its
// metadata; tombstones are returned with Deleted set.
func (n *Node) GetRecord(ctx context.Context, collection, key string) (Record, error) {
	if err := n.alive(); err != nil {
		return Record{}, err
	}
	if err := core.ValidateKey(collection, key, 0); err != nil {
		return Record{}, err
	}
	return n.store.Get(ctx, collection, key)
}

// Scan calls fn for each live record of collection in r (tombstones only if
// r.IncludeDeleted), in ascending key order, until fn returns an error.
func (n *Node) Scan(ctx context.Context, collection string, r KeyRange, fn func(Record) error) error {
	if err := n.alive(); err != nil {
		return err
	}
	if err := core.ValidateKey(collection, "", 0); err != nil {
		return err
	}
	return n.store.Scan(ctx, collection, r, fn)
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
// writer does. See lockWrite for the exact rule.
func (n *Node) Update(ctx context.Context, fn func(tx *Tx) error) error {
	if err := n.alive(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.lockWrite(ctx, "update"); err != nil {
		return err
	}
	defer n.writeMu.Unlock()
	tx := &Tx{node: n, index: map[txKey]int{}}
	tx.ctx = context.WithValue(ctx, txCtxKey{}, tx)
	n.activeTx.Store(tx)
	err := func() error {
		defer n.activeTx.Store(nil)
		return callTxFn(fn, tx)
	}()
	tx.done = true
	if err != nil {
		return err
	}
	return n.commitLocal(ctx, tx.ops)
}

// commitLocal stamps and commits one local transaction. Called with writeMu.
func (n *Node) commitLocal(ctx context.Context, ops []txOp) error {
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
		if n.cfg.policy(op.collection).Syncs() {
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
	self, dev := n.replica, n.DeviceID()
	if ops, err = n.prepareOps(ctx, ops, ts, dev); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	first := n.seq + 1
	b := core.Batch{Records: make([]core.Record, len(ops))}
	seq := n.seq
	for i, op := range ops {
		rec := core.Record{
			Collection: op.collection,
			Key:        op.key,
			Value:      op.value,
			Deleted:    op.deleted,
			Timestamp:  ts,
			Origin:     dev,
		}
		if stamps != nil && stamps[i] != 0 {
			rec.Timestamp = stamps[i]
		}
		if n.cfg.policy(op.collection).Syncs() {
			rec.Origin = self
			// A local write causally follows everything this device holds,
			// so its context is the node's version vector plus its own dot.
			seq++
			rec.Seq = seq
			rec.Context = vv.Clone()
			rec.Context[self] = seq
			b.Changes = append(b.Changes, core.Change{Record: rec, TxnFirst: first, TxnLen: uint32(synced)})
		}
		// Local-only collections never leave the device: their writes take
		// no sequence number and no changelog entry.
		b.Records[i] = rec
	}
	qEvents, settle := n.settleQueue(&b, ts)
	err = n.commitStore(ctx, b)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	settle()
	n.seq = seq
	if seq > 0 {
		n.announce = nil // announced (or the first incarnation: nothing to)
	}
	n.afterCommit(b.Records)
	for _, r := range b.Records {
		if !internal(r.Collection) {
			n.events.publish(Event{Kind: EventChange, Collection: r.Collection, Key: r.Key, Deleted: r.Deleted, Origin: dev, Local: true, Timestamp: r.Timestamp})
		}
	}
	for _, e := range qEvents {
		n.events.publish(e)
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
func (n *Node) prepareOps(ctx context.Context, ops []txOp, ts core.Timestamp, dev core.DeviceID) ([]txOp, error) {
	out, cloned := ops, false
	for i, op := range ops {
		if !n.cfg.policy(op.collection).Syncs() {
			continue
		}
		r := n.resolver(op.collection)
		rm, removes := conflict.RemoverFor(r, op.collection)
		pr, prepares := conflict.PreparerFor(r, op.collection)
		if (op.deleted && !removes) || (!op.deleted && !prepares) {
			continue
		}
		var current []byte
		cur, err := n.store.Get(ctx, op.collection, op.key)
		switch {
		case errors.Is(err, core.ErrNotFound):
		case err != nil:
			return nil, err
		case !cur.Deleted:
			current = cur.Value
		}
		var v []byte
		if op.deleted {
			if current == nil {
				continue // nothing to remove: a tombstone
			}
			v, err = rm.Remove(current, ts, dev)
		} else {
			v, err = pr.Prepare(current, op.value, ts, dev)
		}
		if err != nil {
			n.log.Debug("write left as given", "collection", op.collection, "err", err)
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(ops), true
		}
		out[i] = txOp{collection: op.collection, key: op.key, value: v}
	}
	return out, nil
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
}

// Stats returns a snapshot of the node's counters. It is taken between
// commits (it waits for one in progress), so whatever its version vector
// covers is already reflected in Root, Roots and the node's events.
func (n *Node) Stats(ctx context.Context) (Stats, error) {
	if err := n.alive(); err != nil {
		return Stats{}, err
	}
	if err := n.lockWrite(ctx, "stats"); err != nil {
		return Stats{}, err
	}
	defer n.writeMu.Unlock()
	ss, err := n.store.Stats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	vv, err := n.store.VersionVector(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	subs, dropped := n.events.counts()
	return Stats{Device: n.DeviceID(), Store: ss, VersionVector: vv, Subscribers: subs, EventsDropped: dropped,
		ClockDrift: n.health.clockDrift.Load(), RepairsUnsettled: n.health.repairsUnsettled.Load(),
		AuditTampered: n.anchor.detected.Load()}, nil
}

// Close stops everything the node started, waits for it, ends every
// subscription and closes the store. It is idempotent; later calls return
// the first call's result. Called from inside an Update callback, it
// closes nothing and returns an error wrapping ErrReentrantWrite (it would
// wait for that callback forever).
func (n *Node) Close() error {
	if n.activeTx.Load() != nil && inUpdateCallback() {
		return fmt.Errorf("close: %w", ErrReentrantWrite)
	}
	n.closeOnce.Do(func() {
		close(n.closed)
		if n.stopReembed != nil {
			n.stopReembed()
		}
		n.netMu.Lock()
		if n.stopNet != nil {
			n.stopNet()
		}
		var errs []error
		if n.tr != nil {
			if err := n.tr.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close transport: %w", err))
			}
		}
		n.netMu.Unlock()
		n.peers.Close() // waits for the sessions
		n.wg.Wait()
		n.writeMu.Lock() // let an in-flight Update finish
		defer n.writeMu.Unlock()
		n.anchorLocked(context.Background(), true) // sign the audit head
		if err := saveClock(context.Background(), n.store, n.hlc.Last()); err != nil {
			errs = append(errs, err)
		}
		n.events.close()
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		if err := n.dir.release(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

func (n *Node) alive() error {
	select {
	case <-n.closed:
		return fmt.Errorf("node: %w", ErrClosed)
	default:
		return nil
	}
}

// Now returns a fresh hybrid logical clock reading from this device's
// clock: for hosts that stamp parts of a value themselves (profile fields,
// conversation messages) so that they order with every other write.
func (n *Node) Now() (Timestamp, error) { return n.hlc.Now() }
