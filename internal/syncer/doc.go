// Package syncer runs the per-peer sync protocol: one Session per
// authenticated session with a trusted device, full duplex, for as long as
// the connection lasts (the protocol itself is described on Session and in
// sync_repair.go).
//
// A Session never sees the node. It works against small interfaces: a
// Replica (what this device holds: its version vector and changelog, the
// Merkle trees, and the one commit pipeline that applies what the peer
// sends), an Audit sink, an Events sink, a Policy (which collections
// sync, and at which priority to each peer), Urgent (the recent
// top-priority commits, which may overtake a backlog: sync_priority.go),
// and Links (the node's other sessions, for routing, and the peer's
// announcements). Every timer runs on Config.Scheduler. Nothing
// here takes a lock of the replica's: anything that must be read or done
// under the write lock is one method of Replica.
//
// The package is tested with scripts over an in-memory pipe, against an
// in-memory replica (session_test.go), and fuzzed (FuzzSession).
package syncer

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
)

// Log is what a Session reads of the replica's changelog.
type Log interface {
	// VersionVector returns what the replica holds.
	VersionVector(ctx context.Context) (core.VersionVector, error)
	// Changes calls fn for origin's changes after sequence after, in
	// sequence order, at most limit of them; an error from fn stops the
	// read and is returned.
	Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error
	// Changed returns a channel closed at the next commit (take it before
	// reading state, so that no commit is missed).
	Changed() <-chan struct{}
	// OriginDevice maps a replica incarnation to its device (itself when
	// it is a device).
	OriginDevice(origin core.DeviceID) core.DeviceID
}

// Counter is what a Replica may offer beyond Log: counting a range of
// the changelog without reading its values (core.ChangeCounter), for the
// progress census. A Replica without it, or one whose CountChanges returns
// errors.ErrUnsupported, has its changes read instead.
type Counter interface {
	// CountChanges counts origin's changes in (after, upTo] per collection.
	CountChanges(ctx context.Context, origin core.DeviceID, after, upTo uint64) (map[string]core.ChangeTally, error)
}

// Applier is the replica's commit pipeline, as the peer's frames reach it.
type Applier interface {
	// ApplyRemote applies complete remote transactions, in order, in one
	// atomic commit; transactions held already are skipped.
	ApplyRemote(ctx context.Context, txns [][]core.Change) (Applied, error)
	// ApplyRecords merges record versions received in a repair, or a
	// transaction sent ahead of its origin's stream (sync_priority.go), by
	// causal context, in one atomic commit: no changelog entries, the
	// version vector not raised.
	ApplyRecords(ctx context.Context, recs []core.Change) error
	// Advance raises the version vector to vv after a peer's repair.
	Advance(ctx context.Context, vv core.VersionVector) error
}

// Applied summarises one ApplyRemote.
type Applied struct {
	Txns, Changes, Conflicts int
}

// Trees is what a Session reads of the replica's records for a Merkle
// repair.
type Trees interface {
	// Roots returns the Merkle root of every collection that syncs and
	// holds records.
	Roots() map[string][32]byte
	// Snapshot returns the version vector and the roots, consistent with
	// each other.
	Snapshot(ctx context.Context) (core.VersionVector, map[string][32]byte, error)
	// RepairBase returns a version vector whose every change the trees
	// reflect (commits update the trees after the store).
	RepairBase(ctx context.Context) (core.VersionVector, error)
	// Reconciler starts a reconciliation of a collection's tree (created
	// empty when missing); its calls take the trees' lock.
	Reconciler(collection string, cfg merkle.Config) Reconciler
	// AnswerMerkle answers one reconciliation request from the current
	// tree of collection, encoded.
	AnswerMerkle(collection string, req *merkle.Request) ([]byte, error)
	// Get returns the current version of a record (core.ErrNotFound when
	// there is none).
	Get(ctx context.Context, collection, key string) (core.Record, error)
}

// Reconciler is a merkle.Reconciler over a tree the replica guards.
type Reconciler interface {
	// Start returns the first request (merkle.Reconciler.Start).
	Start() *merkle.Request
	// Next takes the peer's response and returns the next request, nil
	// when done (merkle.Reconciler.Next).
	Next(resp *merkle.Response) (*merkle.Request, error)
	// Diff returns the keys in which the two sides differ, once done.
	Diff() merkle.Diff
}

// Replica is everything a Session needs of this device's data.
type Replica interface {
	Log
	Applier
	Trees
}

// Audit receives the session's audit entries.
type Audit interface {
	// Record appends e to the audit log.
	Record(ctx context.Context, e audit.Entry)
}

// Events receives what the host must be told.
type Events interface {
	// RepairUnsettled reports that repairs with peer did not make the
	// records equal after tries attempts at equal version vectors.
	RepairUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte)
}

// Policy says which collections sync, and how to each peer (a
// policy.Planner behind it). Safe for concurrent use.
type Policy interface {
	// Syncs reports whether collection leaves the device.
	Syncs(collection string) bool
	// Admit reports whether collection's changes travel to peer at all.
	Admit(peer core.DeviceID, collection string) bool
	// Priority returns the priority of collection towards peer: a recent
	// change of a higher priority than the next one of the in-order stream
	// overtakes it (sync_priority.go).
	Priority(peer core.DeviceID, collection string) core.Priority
	// Stub reports whether a change of collection (summary: the change's
	// core.Record.Summary) travels to peer as a stub, without its value
	// (policy.Decision.Carry: sync_fetch.go).
	Stub(peer core.DeviceID, collection string, summary bool) bool
}

// Links is a Session's view of the node's other sessions with this peer
// and others (one value per Session).
type Links interface {
	// Hello is this device's SyncHello, given what it holds.
	Hello(vv core.VersionVector) wire.SyncHello
	// OnHello handles the peer's SyncHello (addresses, replaced sessions).
	OnHello(ctx context.Context, h wire.SyncHello)
	// Direct returns the devices this device has a live session with,
	// the peer left out: it receives their changes from them.
	Direct() core.VersionVector
}

// Limits bound a session. Zero fields take the defaults in their comments.
type Limits struct {
	// HelloTimeout bounds the wait for the peer's SyncHello. 0: 10s.
	HelloTimeout time.Duration
	// FrameTimeout bounds a frame once its first byte arrived. 0: 60s.
	FrameTimeout time.Duration
	// MaxFrame is the largest frame read (FrameLimit). 0: FrameLimit(0).
	MaxFrame int
	// SyncTimeout bounds the wait for an answer during a repair. 0: 30s.
	SyncTimeout time.Duration
	// MaxPending bounds the bytes of incomplete transactions buffered.
	// 0: 512 MiB.
	MaxPending int
}

func (l Limits) withDefaults() Limits {
	if l.HelloTimeout <= 0 {
		l.HelloTimeout = 10 * time.Second
	}
	if l.FrameTimeout <= 0 {
		l.FrameTimeout = 60 * time.Second
	}
	if l.MaxFrame <= 0 {
		l.MaxFrame = FrameLimit(0)
	}
	if l.SyncTimeout <= 0 {
		l.SyncTimeout = 30 * time.Second
	}
	if l.MaxPending <= 0 {
		l.MaxPending = maxPendingBytes
	}
	return l
}

// Config is what every Session of a node shares. Nil Audit, Events and
// Policy record nothing, report nothing and sync every collection (at
// medium priority); nil Urgent sends nothing ahead of the in-order stream.
type Config struct {
	Self      core.DeviceID // this device
	Replica   Replica
	Audit     Audit
	Events    Events
	Policy    Policy
	Urgent    Urgent         // recent top-priority changes (sync_priority.go)
	Wants     Wants          // the wanted list (sync_fetch.go); nil: fetch nothing
	Progress  ProgressSink   // progress reports (progress.go); nil: none
	Batches   *Batches       // periodic flushes per peer across sessions (sync_batch.go); nil: per session
	Scheduler core.Scheduler // every timer; nil: the system clock
	Log       *slog.Logger   // nil: discard
	Rand      io.Reader      // repair salts; nil: crypto/rand
	Limits    Limits
	Streams   StreamHandler // the peer's extra streams (sync_streams.go); nil: none accepted
}
