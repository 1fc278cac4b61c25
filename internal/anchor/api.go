// Package anchor anchors a device's audit log (package audit) in the
// replicated state: each device signs its audit head with its device key
// and replicates it in the internal collection _fed.auditheads, so that a
// rewrite or truncation of its own file is detected against the heads it,
// or its peers, hold. See anchor.go for the whole scheme (epochs after a
// declared restore, forks, write-back of higher heads).
//
// The Anchor owns the node's audit log (OpenLog, Record) and talks to the
// rest of the node through small interfaces: Replica (reads and commits of
// the internal collection through the commit pipeline, under its write
// lock), Signer (the device identity), Events (tamper reports), and a
// core.Scheduler (Config.Clock) that drives its periodic check. It holds
// no lock of the node and starts no goroutine of its own: the node runs
// Run on a goroutine it owns and stops it through its context.
package anchor

import (
	"context"
	"log/slog"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
)

// Replica is the commit pipeline as the anchor uses it (*replica.Replica
// plus a read of the store). Its methods are safe for concurrent use.
type Replica interface {
	// Get reads the stored version of (collection, key) (an error
	// wrapping core.ErrNotFound when absent). It does not take the write
	// lock; the value belongs to the caller.
	Get(ctx context.Context, collection, key string) (core.Record, error)
	// Exclusive runs fn with the write lock held (blocking until it is
	// free) and returns fn's error.
	Exclusive(ctx context.Context, op string, fn func() error) error
	// CommitLocked stamps and commits one local transaction; called inside
	// Exclusive.
	CommitLocked(ctx context.Context, ops []replica.Op) error
	// Current is the incarnation this open writes under (zero: none yet).
	Current() core.DeviceID
	// OriginDevice maps a replica id to the device that wrote under it.
	OriginDevice(origin core.DeviceID) core.DeviceID
}

// Signer is the device identity (*identity.Identity): its id, public key
// and signature. Safe for concurrent use; Sign does not block.
type Signer interface {
	DeviceID() core.DeviceID
	PublicKey() core.PublicKey
	Sign(msg []byte) []byte
}

// Events receives tamper reports: origin is the device whose history was
// rewritten (this device, or a peer whose heads fork), reason a short
// text. Tampered is called without any lock of the anchor held and must
// not block (the node publishes EventAuditTampered).
type Events interface {
	Tampered(origin core.DeviceID, reason string)
}

// Config is what New needs.
type Config struct {
	// Log is the device's audit log (OpenLog). Required.
	Log *audit.Log
	// Memory says that Log lives in memory (a store without a database):
	// it restarts empty at every open, so the device signs no heads of its
	// own and checks none; it still verifies and keeps its peers' heads.
	Memory bool
	// Replica, Identity and Events: see their types. Required.
	Replica  Replica
	Identity Signer
	Events   Events
	// Clock reads the time of heads and runs the periodic check (its
	// timers when it is a core.Scheduler, real time otherwise; nil: the
	// system clock).
	Clock core.Clock
	// Logger receives errors and notices (nil: discard).
	Logger *slog.Logger
	// RestoreMarker is the path of a restore declaration (the root
	// package's RestoredFile) that Open honours if it exists ("": none).
	RestoreMarker string
	// SyncDir makes a directory's entries durable once the declaration is
	// removed (nil: nothing).
	SyncDir func(dir string)
}

// New builds the anchor of one open of a device. Call Open, then run Run.
func New(cfg Config) *Anchor {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sched := core.SchedulerOf(cfg.Clock)
	return &Anchor{
		log: cfg.Log, rep: cfg.Replica, ident: cfg.Identity, events: cfg.Events,
		sched: sched, logger: logger, marker: cfg.RestoreMarker, synced: cfg.SyncDir,
		every: HeadEvery, kick: make(chan struct{}, 1), lastPub: sched.Now(), memory: cfg.Memory,
	}
}

func (a *Anchor) self() core.DeviceID { return a.ident.DeviceID() }

// Detected counts tamper detections, this device's or a peer's (for
// Stats).
func (a *Anchor) Detected() uint64 { return a.detected.Load() }

// Tampered returns the first detection of this device's tampering in this
// open (nil: none).
func (a *Anchor) Tampered() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tampered
}

// SetEvery sets the number of new entries after which a head is due
// (HeadEvery by default; tests lower it).
func (a *Anchor) SetEvery(n int) {
	a.mu.Lock()
	a.every = n
	a.mu.Unlock()
}
