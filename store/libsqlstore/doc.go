// Package libsqlstore is the default core.Store: one local libSQL (SQLite)
// file per node, opened with Open.
//
// # Schema
//
// The schema is versioned by PRAGMA user_version and created by migrations
// that run at Open, in one transaction, so a file is always at a known
// version; reopening applies nothing. The tables are:
//
//   - devices: a local dictionary from DeviceID (32 bytes) to a small
//     integer, so that origins and causal contexts take a few bytes a row.
//   - changelog: one row per change, holding the change's value, keyed by
//     an integer id that packs the origin's dictionary index above the
//     sequence number (index << 40 | seq), so that one origin's log is one
//     contiguous id range and the table needs no second index.
//   - records: the current version of every (collection, key). When the
//     current version is a change still in the changelog (the common case:
//     every local write), the record row holds only ref, that change's id,
//     and a trigger on the changelog installs it as part of the change's own
//     INSERT; reads join the changelog row. Otherwise (a resolved version,
//     or a version whose changelog entry was truncated) the version is
//     stored inline. Truncate moves referenced versions inline before
//     deleting their changelog rows, so nothing is lost and no value is
//     stored twice.
//   - vv: the version vector, plus per origin the highest truncated
//     sequence number (the changelog of an origin is exactly the sequence
//     numbers in (floor, seq]).
//   - meta: small metadata values.
//   - device_registry, conflicts, audit: owned by the packages that keep the
//     device registry, the manual conflict queue and the audit log, which
//     reach them through Store.DB; they are created here so that the whole
//     file's schema is versioned in one place.
//
// Collections, keys and metadata keys are stored as BLOBs: keys may hold any
// bytes (including NUL), and BLOB comparison is bytewise, which is the order
// of Go strings that Scan promises.
//
// # Causal contexts
//
// A context is encoded as uvarint(n) followed by n pairs
// (uvarint(device index delta), uvarint(counter)), sorted by device index,
// zero counters omitted. Decoding rejects anything else (unknown device
// index, unsorted indices, truncated or trailing bytes) with core.ErrCorrupt
// and never panics.
//
// # Durability and concurrency
//
// The file is in WAL mode. With the default synchronous=NORMAL a commit is
// durable against a crash of the process (kill -9) as soon as Commit
// returns: its WAL frames are in the operating system's cache. A power loss
// or kernel crash may lose the last transactions (never corrupting the
// file); set Options.FullSync for synchronous=FULL, which fsyncs the WAL on
// every commit and survives power loss, at a large cost in write
// throughput.
//
// All writes go through one dedicated connection serialised by a mutex and
// start with BEGIN IMMEDIATE, so store writers never fail with "database is
// locked"; reads use a pool of connections and see committed data only.
// Every pooled connection gets busy_timeout and the synchronous setting
// when it is opened (a driver.Connector wrapper), so other packages writing
// their own tables through DB wait instead of failing. The store assumes it
// is the only process using the file.
package libsqlstore
