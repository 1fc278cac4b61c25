// Package replica is the commit pipeline of a federation node: the one
// path by which every write reaches the store, whether made here (Update,
// Commit), received from a peer as transactions (ApplyRemote) or as record
// versions in a Merkle repair (ApplyRecords), or raising the version vector
// after a repair (Advance). It owns the node's write lock alone, the
// sequence numbers of this device's replica incarnation, the Merkle trees
// kept in step with the store, and the manual conflict queue.
//
// Everything derived from commits that lives outside the pipeline (the
// device registry, stale embeddings, later blobs and compaction) is an
// Observer registered on the Replica: it sees every commit exactly once, in
// commit order, and hands any work that may block (closing sessions,
// calling the host) to a function run after the write lock is released.
//
// Callers outside this package never take the write lock: they call a
// method that does its work under it (Exclusive, Snapshot, VersionVector,
// Conflicts), in the way raft's replication goroutines talk to its core.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
)

// Config is what a Replica is built from. Store, Device and HLC are
// required; every other zero value is documented.
type Config struct {
	// Store holds the records, changelog and metadata.
	Store core.Store
	// Device is this device's id.
	Device core.DeviceID
	// Created is set when the device's identity was created in this open:
	// the first incarnation then writes under the device id itself.
	Created bool
	// HLC stamps local writes and follows remote timestamps.
	HLC *core.HLC
	// Clock reads physical time for clock-drift reports (nil: system clock).
	Clock core.Clock
	// MaxClockDrift is the bound reported with clock-drift warnings.
	MaxClockDrift time.Duration
	// Policy returns a collection's policy (nil: every collection syncs
	// immediately). Only its Mode is read here: whether the collection
	// syncs.
	Policy func(collection string) core.Policy
	// Resolvers settles concurrent versions, per collection (nil: a
	// conflict.NewRegistry, the conflict.Default strategies).
	Resolvers *conflict.Registry
	// Logger receives logs (nil: discarded).
	Logger *slog.Logger
	// Check vets records arriving from a peer (from: their origin) under
	// the write lock, before they are merged; an error refuses the whole
	// batch. Replica announcements are checked and learned before it runs.
	// nil: no further check.
	Check func(ctx context.Context, from core.DeviceID, recs []core.Record) error
	// Audit appends an entry to the audit log (nil: nothing is audited).
	// Called with the write lock held; it must not block on the replica.
	Audit func(ctx context.Context, e audit.Entry)
	// Publish delivers an event to the host's subscribers (nil: dropped).
	// Called with the write lock held, in commit order; it must not block.
	Publish func(Event)
	// Alive reports whether the node still runs (nil: always): remote
	// writes fail with its error once the node closes.
	Alive func() error
	// WantValues reports whether this device wants every value of a
	// collection (its own policy carries values: policy.Decision
	// WantsValues): stubs of it go on the wanted list (wanted.go). nil:
	// no collection's.
	WantValues func(collection string) bool
}

// Replica is the commit pipeline of one open store. It is safe for
// concurrent use. Build it with New.
type Replica struct {
	cfg   Config
	log   *slog.Logger
	store core.Store
	dev   core.DeviceID
	hlc   *core.HLC
	// resolvers settles concurrent versions (Config.Resolvers).
	resolvers *conflict.Registry

	// writeMu serialises local writes: sequence numbers and causal contexts
	// are assigned under it, and Update holds it for the whole transaction.
	writeMu  sync.Mutex
	activeTx atomic.Pointer[txn] // the transaction whose function is running (see lockWrite)
	after    []func()            // work handed off by observers, run by unlock (under writeMu)
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

	trees     trees      // Merkle trees of the collections that sync
	queue     queue      // manual conflicts waiting for the host (under writeMu)
	changed   *Notifier  // woken after every commit
	observers []Observer // under writeMu

	clockDrift atomic.Uint64 // batches beyond the drift bound

	want wantedState // the wanted list (wanted.go)

	early early // contexts installed ahead of the version vector (early.go; under writeMu)
}

// New opens the pipeline on cfg.Store: it restores the clock, the far-future
// mark, the Merkle trees, the conflict queue and the known incarnations from
// the store. It does no I/O beyond the store.
func New(ctx context.Context, cfg Config) (*Replica, error) {
	if cfg.Store == nil || cfg.HLC == nil || cfg.Device.IsZero() {
		return nil, fmt.Errorf("replica: %w: store, device and clock are required", core.ErrInvalidConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Resolvers == nil {
		cfg.Resolvers = conflict.NewRegistry()
	}
	st := cfg.Store
	vv, err := st.VersionVector(ctx)
	if err != nil {
		return nil, fmt.Errorf("load version vector: %w", err)
	}
	n := &Replica{cfg: cfg, log: cfg.Logger, store: st, dev: cfg.Device, hlc: cfg.HLC, resolvers: cfg.Resolvers, changed: NewNotifier()}
	if cfg.Created && vv[cfg.Device] == 0 {
		// The identity was born in this open, so no other copy of this
		// store can exist yet: the first incarnation is the device itself.
		// Every later open mints a replica at its first write (replica.go).
		n.replica = cfg.Device
		n.replicas.setCurrent(n.replica)
	}
	// Never reuse a timestamp this device already issued, even if the clock
	// went backwards while the node was down: observe the last write of the
	// first incarnation and of the latest one minted.
	own := []core.DeviceID{cfg.Device}
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
	if ts, err := LoadClock(ctx, st); err == nil {
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
	if err := n.loadWanted(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// Source names the entry point a commit came through.
type Source int

// Commit sources.
const (
	// SourceLocal is a local transaction (Update, Commit).
	SourceLocal Source = iota + 1
	// SourceRemote is a batch of a peer's transactions (ApplyRemote).
	SourceRemote
	// SourceRepair is record versions from a Merkle repair (ApplyRecords).
	SourceRepair
	// SourceAdvance raises the version vector after a repair (Advance).
	SourceAdvance
	// SourceFetch installs fetched values over stubs, or changes the
	// wanted list (Fill, Want: wanted.go).
	SourceFetch
)

// String names the source.
func (s Source) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceRemote:
		return "remote"
	case SourceRepair:
		return "repair"
	case SourceAdvance:
		return "advance"
	case SourceFetch:
		return "fetch"
	}
	return "source(?)"
}

// Commit describes one successful store commit to the observers.
type Commit struct {
	Source Source
	// Records are the record versions written, the SDK's internal ones
	// (queue entries, announcements, registry operations) included. The
	// slice is shared: observers must not modify it.
	Records []core.Record
}

// Observer keeps state derived from commits in step with the store.
type Observer interface {
	// Committed is called once for every successful commit, in commit
	// order, with the write lock held: it must not block and must not call
	// the Replica. Work that may block (closing sessions, calling the
	// host) goes into the returned function, which the Replica runs after
	// releasing the write lock (nil: nothing to do).
	Committed(c Commit) (after func())
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(c Commit) func()

// Committed calls f.
func (f ObserverFunc) Committed(c Commit) func() { return f(c) }

// Observe registers o for every later commit. Observers run in the order
// they were registered.
func (n *Replica) Observe(o Observer) {
	n.writeMu.Lock()
	n.observers = append(n.observers, o)
	n.writeMu.Unlock()
}

// EventKind tells what an Event reports.
type EventKind int

// Event kinds, in the order of the host-facing federation.EventKind.
const (
	EventChange EventKind = iota + 1
	EventConflict
	EventResolved
	EventClockDrift
)

// Event is one notification the pipeline produces for the host.
type Event struct {
	Kind       EventKind
	Collection string
	Key        string
	Deleted    bool
	Origin     core.DeviceID // the device, not its incarnation
	Local      bool
	Timestamp  core.Timestamp
	ConflictID string
	Reason     string
}

// policy returns the policy of a collection.
func (n *Replica) policy(collection string) core.Policy {
	if n.cfg.Policy == nil {
		return core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate}
	}
	return n.cfg.Policy(collection)
}

func (n *Replica) publish(e Event) {
	if n.cfg.Publish != nil {
		n.cfg.Publish(e)
	}
}

func (n *Replica) record(ctx context.Context, e audit.Entry) {
	if n.cfg.Audit != nil {
		n.cfg.Audit(ctx, e)
	}
}

func (n *Replica) alive() error {
	if n.cfg.Alive != nil {
		return n.cfg.Alive()
	}
	return nil
}

// DeviceID returns this device's id.
func (n *Replica) DeviceID() core.DeviceID { return n.dev }

// ClockDrift counts received batches whose timestamps lay beyond the drift
// bound.
func (n *Replica) ClockDrift() uint64 { return n.clockDrift.Load() }

// Changed returns a channel closed at the next commit: take it before
// reading state, so that no commit is missed.
func (n *Replica) Changed() <-chan struct{} { return n.changed.Wait() }

// VersionVector returns the store's version vector, read under the write
// lock: whatever it covers is already reflected in the Merkle trees.
func (n *Replica) VersionVector(ctx context.Context) (core.VersionVector, error) {
	n.writeMu.Lock()
	defer n.unlock()
	return n.store.VersionVector(ctx)
}

// Exclusive runs fn with the write lock held, between commits; fn may call
// CommitLocked. With op set, a call from inside an Update callback fails
// with ErrReentrantWrite (see lockWrite); with op empty it simply waits.
// Work handed off by observers of commits made in fn runs after fn, once
// the lock is released.
func (n *Replica) Exclusive(ctx context.Context, op string, fn func() error) error {
	if op == "" {
		n.writeMu.Lock()
	} else if err := n.lockWrite(ctx, op); err != nil {
		return err
	}
	defer n.unlock()
	return fn()
}

// unlock releases the write lock, then runs the work observers handed off
// under it. Every release of writeMu goes through it.
func (n *Replica) unlock() {
	after := n.after
	n.after = nil
	n.writeMu.Unlock()
	for _, f := range after {
		f()
	}
}

// errNotHeld guards CommitLocked.
var errNotHeld = errors.New("replica: CommitLocked called without the write lock")
