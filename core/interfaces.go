package core

import (
	"context"
	"io"
	"time"
)

// RecordReader reads the current version of records.
//
// Implementations are safe for concurrent use. Returned records and their
// byte slices belong to the caller.
type RecordReader interface {
	// Get returns the current version of (collection, key), tombstones
	// included (Deleted set). It returns ErrNotFound when the key was never
	// written (or its tombstone was purged).
	Get(ctx context.Context, collection, key string) (Record, error)
	// Collections lists, in ascending order, the collections that hold at
	// least one record (tombstones count).
	Collections(ctx context.Context) ([]string, error)
	// Scan calls fn for the current versions in r, in ascending key order,
	// until fn returns an error (which Scan returns) or the range ends.
	// Tombstones are skipped unless r.IncludeDeleted. fn must not write to
	// the store.
	Scan(ctx context.Context, collection string, r KeyRange, fn func(Record) error) error
}

// Changelog is the ordered log of changes, per origin device.
//
// Implementations are safe for concurrent use.
type Changelog interface {
	// VersionVector returns, for every origin, the highest sequence number
	// committed locally.
	VersionVector(ctx context.Context) (VersionVector, error)
	// Changes calls fn for origin's changes with sequence numbers above
	// after, in ascending order, at most limit of them (0: all), until fn
	// returns an error (which Changes returns). The log may lack changes
	// (truncated, or skipped by a Batch.Advance): a caller that needs a
	// contiguous run checks that each Seq follows the previous one.
	Changes(ctx context.Context, origin DeviceID, after uint64, limit int, fn func(Change) error) error
	// Truncate removes changelog entries covered by acked (acknowledged by
	// every device that needs them) and returns how many it removed. The
	// version vector is unaffected.
	Truncate(ctx context.Context, acked VersionVector) (int64, error)
}

// Store is a node's durable state: records, changelog and version vector,
// plus small metadata (the device's identity, settings).
//
// All methods are safe for concurrent use. Commit is atomic and durable: once
// it returns nil the whole batch survives a crash of the process; if it
// returns an error none of it is visible.
type Store interface {
	RecordReader
	Changelog
	// Commit atomically appends b.Changes to the changelog, raises the
	// version vector accordingly and installs b.Records as current versions.
	// A change whose (Origin, Seq) is already in the log is skipped, and a
	// batch whose changes are all already logged changes nothing (not even
	// its records), so replaying a batch is harmless. b.Advance raises the
	// version vector as documented on Batch.
	Commit(ctx context.Context, b Batch) error
	// Meta returns the metadata value for key, or ErrNotFound.
	Meta(ctx context.Context, key string) ([]byte, error)
	// SetMeta durably stores a metadata value.
	SetMeta(ctx context.Context, key string, value []byte) error
	// Stats counts what the store holds.
	Stats(ctx context.Context) (StoreStats, error)
	// Close releases the store; later calls return ErrClosed. Idempotent.
	Close() error
}

// StoreStats counts a store's contents.
type StoreStats struct {
	Records    int64 // live records
	Tombstones int64 // deleted records still kept
	Changes    int64 // changelog entries not yet truncated
}

// Stream is one bidirectional, ordered, reliable byte stream inside a
// Session. CloseWrite signals end of data to the peer; Close ends both
// directions.
type Stream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Session is an authenticated connection to one peer device. Every byte on
// it is encrypted and authenticated against the peer's static device key.
//
// Methods are safe for concurrent use.
type Session interface {
	// Peer returns the authenticated device id of the other side.
	Peer() DeviceID
	// PeerKey returns the other side's public key, as proven in the handshake.
	PeerKey() PublicKey
	// OpenStream opens a new stream to the peer.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close ends the session, giving reason to the peer where possible.
	Close(reason error) error
	// Done is closed once the session has ended, for whatever reason.
	Done() <-chan struct{}
}

// Authorizer decides which devices may hold a session. The transport calls
// it once the peer has proven its key and before any application byte moves.
// It must be safe for concurrent use and should return quickly; an error
// (normally wrapping ErrUnauthorized) refuses the peer.
type Authorizer interface {
	Authorize(ctx context.Context, id DeviceID, key PublicKey) error
}

// Transport carries sessions between devices.
//
// Dial and Accept block until a session is established, ctx ends or the
// transport closes. All methods are safe for concurrent use.
type Transport interface {
	// Dial connects to addr and authenticates. When peer is non-zero the
	// remote device must prove that identity or Dial fails.
	Dial(ctx context.Context, addr string, peer DeviceID) (Session, error)
	// Accept returns the next authenticated and authorized inbound session.
	Accept(ctx context.Context) (Session, error)
	// Addr is the address peers dial to reach this transport.
	Addr() string
	// Close stops listening and closes every session. Idempotent.
	Close() error
}

// PeerInfo is what discovery learns about a device: who it is and where to
// reach it.
type PeerInfo struct {
	Device DeviceID
	Addrs  []string
	Seen   time.Time
}

// Discoverer finds the user's other devices and makes this one findable.
type Discoverer interface {
	// Run advertises self and calls found for every peer it learns of, until
	// ctx ends; it then returns ctx.Err() or the error that stopped it.
	// found may be called from several goroutines and must not block long.
	Run(ctx context.Context, self PeerInfo, found func(PeerInfo)) error
}

// Conflict is two concurrent versions of one record, as seen by the device
// that detected it. Base is their common ancestor when known.
type Conflict struct {
	Collection, Key string
	Local, Remote   Record
	Base            *Record
}

// Resolution is a Resolver's answer for one conflict.
type Resolution struct {
	// Value is the merged value (ignored when Deleted).
	Value []byte
	// Deleted makes the outcome a tombstone.
	Deleted bool
	// Manual defers the decision to the host: the conflict is queued and
	// the local version kept until the host resolves it.
	Manual bool
}

// Resolver settles concurrent versions of a record. It must be
// deterministic and symmetric (the outcome cannot depend on which side is
// local) so that every device reaches the same result independently, and it
// must not block.
type Resolver interface {
	Resolve(ctx context.Context, c Conflict) (Resolution, error)
}
