// Package libsqlstore is the default core.Store: one local libSQL (SQLite)
// file per node, opened with Open.
//
// # Schema
//
// The schema is versioned by PRAGMA user_version and created by migrations
// that run at Open, in one transaction, so a file is always at a known
// version; reopening applies nothing, and a file from a newer version is
// refused (core.ErrVersionMismatch). The tables are:
//
//   - devices: a local dictionary from DeviceID (32 bytes) to a small
//     integer, so that origins and causal contexts take a few bytes a row.
//   - changelog: one row per change: id, ck, flags, meta, value. The id
//     packs the origin's dictionary index above the sequence number
//     (index << 40 | seq), so one origin's log is one contiguous id range
//     and the table needs no second index. flags: 1 tombstone, 2 installed
//     as its key's current version.
//   - records: the current version of every (collection, key), keyed by
//     ck. When the current version is a change still in the changelog (the
//     common case: every local write) the row holds only ref, that change's
//     id, and the deleted flag: a trigger on the changelog installs it as
//     part of the change's own INSERT, and reads join the changelog row.
//     Otherwise (a resolved version, or one whose changelog entry was
//     truncated) ref is NULL and meta and value hold the version. Truncate
//     moves referenced versions inline before deleting their changelog
//     rows: nothing is lost and no value is stored twice.
//   - vv: the version vector, plus per origin a floor such that seq -
//     floor is the number of changelog rows the origin holds (which makes
//     Stats cheap); truncation and Advance raise it. Advance can leave
//     gaps in an origin's sequence numbers, which Changes shows.
//   - meta: small metadata values.
//   - device_registry, conflicts, audit: owned by the packages that keep the
//     device registry, the manual conflict queue and the audit log, which
//     reach them through Store.DB; they are created here so that the whole
//     file's schema is versioned in one place.
//
// # Encodings
//
// All integers below are unsigned varints (encoding/binary uvarint).
//
//   - ck (collection and key): len(collection), collection, key. Varints
//     are prefix-free, so one collection's rows are exactly the keys that
//     start with its prefix, ordered by key: BLOB comparison is bytewise,
//     the order of Go strings that Scan promises. Keys may hold any bytes.
//   - causal context: n, then n pairs (device index delta, counter), sorted
//     by device index, zero counters omitted.
//   - changelog meta: timestamp, transaction's first sequence number,
//     transaction length, causal context.
//   - records meta: timestamp, origin's device index, sequence number,
//     causal context.
//
// Metadata is packed rather than spread over columns because the driver
// binds every parameter through cgo at a cost of about a microsecond: five
// parameters a change (and multi-row INSERTs of 64 rows) keep local writes
// within reach of raw inserts (see cmd/fedbench write). Decoding rejects
// anything malformed (truncated or trailing bytes, unknown device index,
// unsorted indices) with core.ErrCorrupt and never panics.
//
// # Limits
//
// Changelog ids bound sequence numbers to 2^40-1 (a trillion changes per
// device) and the dictionary to 2^22-1 devices; Commit refuses more with
// core.ErrInvalidArgument.
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
// Commits never checkpoint inline: a background goroutine copies the WAL
// back into the database file once a few megabytes have been committed
// (PASSIVE, beside the writer and readers), and the writer itself completes
// a checkpoint only when the WAL file passes Options.MaxWALBytes, so that
// it restarts; see checkpoint.go. New files use 16 KiB pages
// (Options.PageSize).
//
// Close copies the whole WAL back and truncates it, so that after a clean
// Close the database file alone holds everything (copying it is a complete
// backup), and returns only once the driver, which closes native
// connections on a thread of its own, has closed every descriptor on the
// files (on Linux, where /proc/self/fd shows them; see release.go): the
// same path can be opened again, or replaced, as soon as Close returns.
//
// All writes go through one dedicated connection serialised by a mutex and
// start with BEGIN IMMEDIATE, so store writers never fail with "database is
// locked"; reads use a pool of connections and see committed data only.
// Every pooled connection gets busy_timeout and the synchronous setting
// when it is opened (a driver.Connector wrapper), so other packages writing
// their own tables through DB wait instead of failing.
//
// Two hot paths go below go-libsql, to SQLite's and libSQL's C APIs (the
// library go-libsql links exports both): the writer keeps its full-size
// multi-row INSERTs prepared and runs them on its own SQLite handle,
// binding the values where they lie (prepared.go), and Changes reads the
// changelog on read-only connections the store opens itself on the same
// file, with the same key, at most MaxReaders of them (rawread.go: one
// cgo call per row instead of one per column, values copied once). Each
// falls back to database/sql, with a warning in the log, when it cannot be
// used. CountChanges (core.ChangeCounter) tallies a changelog range in
// one aggregate query without reading values.
//
// The writer finds its SQLite handle by asking its connection: once the
// first store opens, every SQLite connection the process opens answers
// the SQL function fed_conn_handle() with its own handle (an SQLite
// automatic extension: process-wide, as SQLite makes them). The function
// is DIRECTONLY, so the schema of a damaged or hostile file (a trigger, a
// view) cannot call it.
//
// # Exclusive use and damage
//
// An open store locks a guard file beside the database (its path plus
// "-lock"): a second Open of the same file, in this process or another,
// fails with core.ErrLocked. The guard also records the store's commit
// high-water (see guard.go); Open refuses with core.ErrDamaged a store
// that has rolled back behind commits it acknowledged in a way neither a
// power failure nor a restore explains (a WAL deleted, cut short or
// corrupted; an older copy written over the same file in place), a file
// that PRAGMA quick_check finds damaged, and one SQLite cannot read at all.
// An older copy restored as a file of its own (moved into place, or copied
// alone or with its guard into a new directory) opens as it is.
//
// # Encryption
//
// With Options.Key the file is encrypted at rest. The bundled libSQL is
// SQLite3 Multiple Ciphers (SQLite3MC), whose codec encrypts every page
// the pager writes: the database file, the WAL frames and the backups made
// by VACUUM INTO (Backup), which come out encrypted with the same key
// and open with Open and that key only. Every pooled connection sets the
// key as its very first statements (PRAGMA cipher, PRAGMA hexkey; a
// "?key=" in the DSN leaves the file plain, and the driver's
// WithEncryption applies only to remote replicas), then reads the schema:
// a failure there is core.ErrWrongKey, reported before any check of the
// file's soundness, so a wrong key is never taken for damage (nor damage
// of the first page for anything but a wrong key: the cipher cannot tell
// them apart). Open also compares the file's header with the key it is
// given: a plain file opened with a key, or an encrypted one without, is
// core.ErrWrongKey too. Temporary files (sorts, statement journals) are
// kept in memory (temp_store=MEMORY), since they would hold plain pages.
// The shared-memory index (-shm) holds only page numbers and checksums,
// and the guard file only counters.
//
// The cipher is AES-256 in CBC mode ("aes256cbc", SQLite3MC's wxSQLite3
// scheme), with the AES key derived from Options.Key (32 random bytes,
// passed to the codec as hexkey) by SHA-256 iterated 4001 times, without
// salt (harmless for a random key, weak for a passphrase: hence KeySize
// random bytes), and each page's IV derived from its page number. It is the only cipher this build accepts:
// it refuses chacha20 (sqleet), sqlcipher, aes128cbc and ascon128 with
// "Cipher unknown", so neither an authenticated page cipher nor a
// SQLCipher-compatible file is available without another build of the
// library. What that means: an attacker who reads the file (a stolen
// disk) learns nothing of the content without the key beyond sizes (page
// count, WAL length) and which pages changed between two copies (a page
// rewritten with the same content encrypts the same); an attacker who can
// also write the file can corrupt pages, which then decrypt to noise that
// SQLite's checks (quick_check at Open, integrity_check) catch as damage
// at best, but there is no tag to detect it cryptographically. The page
// header bytes 16 to 23 (page size and fixed values) stay plain, as
// SQLite3MC keeps them for opening the file.
//
// Cost: the bundled build encrypts in software (its Rijndael, not the
// CPU's AES instructions), and every page is encrypted when the WAL gets
// it and again when a checkpoint copies it into the database file. Raw
// libSQL inserts of 1 KiB rows, 1000 a transaction, went from about 4.4
// to 7.2 µs of CPU a row with a key on a 2-core machine (about 1.2 µs
// with no checkpoint); fedbench write and initial-sync take -encrypt to
// measure the store's own cost.
//
// Rekey changes the key of a closed store (or encrypts a plain one, or
// decrypts one), rewriting every page under the new key: SQLite3MC cannot
// rekey in WAL mode, so it switches to a rollback journal for the
// rewrite. Backups taken earlier stay under their old key.
package libsqlstore
