package core

import (
	"context"
	"io"
)

// BackupStore is a Store that can copy itself while in use: an optional
// capability, checked once where the node is built, on the store or along
// its Unwrap chain (see Unwrapper).
//
// Backup writes to w a consistent snapshot of everything the store holds
// (records, changelog, version vector, metadata, and any table that shares
// its file), as it stood at one instant between two commits: the state a
// crash at that instant would have left. Writers are not blocked while it
// runs (readers see an older snapshot), so a large copy takes no lock that
// a host write waits for. The snapshot is in the implementation's own
// format: the libSQL store writes a self-contained database file (no WAL)
// that Open accepts in place of its file; the in-memory store writes a
// stream that memstore.Restore reads. It may block on I/O; it returns ctx's
// error when ctx ends, ErrClosed after Close, or w's error. Safe for
// concurrent use.
type BackupStore interface {
	Store
	Backup(ctx context.Context, w io.Writer) error
}
