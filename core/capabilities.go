package core

import (
	"context"
	"database/sql"
)

// Optional store capabilities.
//
// A Store may do more than the Store interface asks. Each such extra is a
// named interface of this package (SQLStore, BackupStore, ManyGetter,
// ChangeCounter), which the node looks for once, where it is built
// (federation.New), never in the middle of its work, and which every
// implementation asserts at compile time (var _ core.SQLStore =
// (*Store)(nil)). What the node does without one is documented on the
// interface.
//
// Wrapped stores. A host may wrap a store to count, trace or throttle its
// calls. A wrapper that embeds the Store interface hides the capabilities
// of the store inside it, since Go promotes only the methods of the
// embedded interface type. It keeps them in one of two ways:
//
//   - forwarding: the wrapper implements the capability itself, by calling
//     the inner store's;
//   - unwrapping: the wrapper implements Unwrapper, and the node follows
//     the Unwrap chain as errors.As does (StoreAs) to find the capability
//     on an inner store.
//
// The chain is followed for the capabilities that concern the storage
// itself (SQLStore: tables kept beside the records; BackupStore: a copy of
// everything stored), since a wrapper that unwraps declares that the inner
// store holds all of its durable state. A capability that reads records
// (ManyGetter, ChangeCounter) is used only when the outermost store offers
// it, because a wrapper may change what a record reads as (a cache, a
// transforming layer), and reading beneath it would bypass that.

// Unwrapper is implemented by a Store that wraps another. Unwrap returns
// the wrapped store, which must hold all of the wrapper's durable state
// (the wrapper adds behaviour, such as metrics, not data), so that a
// capability of the inner store (its SQL database, its backups) serves the
// wrapper as well. See StoreAs.
type Unwrapper interface {
	Unwrap() Store
}

// maxUnwrap bounds the Unwrap chain StoreAs follows, so that a wrapper
// that (wrongly) unwraps to itself cannot hang the node's construction.
const maxUnwrap = 32

// StoreAs returns the first store of st's Unwrap chain (st itself first)
// that implements T, the way errors.As finds an error in a chain, and
// whether it found one. T is normally one of the capability interfaces of
// this package. Callers use the returned value for the capability only:
// records are read and written through st, the outermost store.
func StoreAs[T any](st Store) (T, bool) {
	for i := 0; st != nil && i < maxUnwrap; i++ {
		if c, ok := st.(T); ok {
			return c, true
		}
		u, ok := st.(Unwrapper)
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	var zero T
	return zero, false
}

// SQLStore is a Store kept in a SQL database that lets other parts of the
// node keep their own tables in it: the device registry
// (registry.EnsureSchema) and the audit log (audit.EnsureSchema). Tables
// there share the store's file, its encryption at rest, its backups and
// its restores, so the devices this one trusts and its audit chain survive
// a restart and travel with a backup. The libSQL store implements it.
//
// Both the registry and the audit log need exactly a database to put a
// table in, so that is the capability; a capability per table would name
// the same method twice.
//
// Without it (the in-memory store, or a host's store that neither offers
// it nor unwraps to one that does), federation.New logs a warning and
// keeps both in memory, so both start empty at each New. Devices paired
// through the ceremony come back, since the signed registry operations are
// records of the store and New folds them again; what only the table held
// is lost: devices admitted with Node.TrustDevice, last-seen times. The
// audit log restarts empty, so the node signs no audit heads of its own
// (its log would restart at sequence 1); it still verifies and keeps its
// peers' heads.
//
// DB returns the database, open until the store's Close (which closes it).
// Its users create and write only their own tables, never the store's
// (records, changelog, version vector, metadata), each write in its own
// transaction. Safe for concurrent use.
type SQLStore interface {
	Store
	DB() *sql.DB
}

// ManyGetter is implemented by stores that read many keys of one
// collection at once (both stores of this module do). Applying a peer's
// changes uses it to read the current versions of a whole batch in a few
// queries instead of one per change; a store without it is read key by
// key, which gives the same result, only slower. It is used only when the
// outermost store offers it (see Unwrapper).
//
// GetMany returns the current versions (tombstones included) of those keys
// of collection that exist, keyed by key; absent keys are missing from the
// map, which is not an error. The map and the records belong to the
// caller. Safe for concurrent use.
type ManyGetter interface {
	GetMany(ctx context.Context, collection string, keys []string) (map[string]Record, error)
}

// ChangeCounter is implemented by stores that count a range of an origin's
// changelog without reading its values (the libSQL store, where reading
// them would cost as much as sending them). A session uses it for its
// progress totals, the census of what the peer lacks; a store without it
// is read change by change, which gives the same counts at the cost of
// reading every value once more. It is used only when the outermost store
// offers it (see Unwrapper). Safe for concurrent use.
type ChangeCounter interface {
	// CountChanges counts origin's changes with sequence numbers in
	// (after, upTo], as Changes would return them, per collection:
	// collections without any are missing (nil when the range holds
	// none).
	CountChanges(ctx context.Context, origin DeviceID, after, upTo uint64) (map[string]ChangeTally, error)
}

// ChangeTally counts the changes of one collection.
type ChangeTally struct {
	// Changes is how many there are.
	Changes uint64
	// Bytes sums len(Collection) + len(Key) + len(Value) over them, Value
	// as Changes returns it (a tombstone and a stub have none).
	Bytes uint64
}
