package core

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on host input, enforced by the node before anything is stored.
const (
	// MaxCollectionLen is the longest collection name in bytes.
	MaxCollectionLen = 128
	// MaxKeyLen is the longest record key in bytes.
	MaxKeyLen = 1024
	// MaxValueLen is the largest record value in bytes; media larger than
	// this travels as content-addressed chunks instead.
	MaxValueLen = 4 << 20
)

// Record is one version of (Collection, Key): the unit the SDK stores,
// syncs and resolves.
type Record struct {
	// Collection names the typed collection the record belongs to.
	Collection string
	// Key identifies the record within its collection (any bytes).
	Key string
	// Value is the payload; nil for a tombstone. The store owns the slice it
	// returns: callers must not modify it.
	Value []byte
	// Deleted marks a tombstone: the record was deleted at Timestamp.
	Deleted bool
	// Timestamp is the hybrid logical clock time of the write.
	Timestamp Timestamp
	// Origin is the replica that made the write: one incarnation of a
	// device, the device id itself for its first (see the federation
	// package documentation and Node.OriginDevice).
	Origin DeviceID
	// Seq is the write's sequence number in Origin's changelog.
	Seq uint64
	// Context is the causal context: every write this version supersedes,
	// including its own (Origin, Seq). Two versions conflict only when their
	// contexts are concurrent.
	Context VersionVector
	// Summary marks a version the host wrote as a summary (Tx.PutSummary):
	// it travels whole to a device with the summary policy
	// (ModeSummary), where other versions travel as stubs.
	Summary bool
	// Stub marks a version held without its value (selective sync): Value
	// is nil, ValueSize and ValueDigest describe the value that devices
	// holding it whole have. A full version has Stub false and zero
	// ValueSize and ValueDigest (see Size and Digest).
	Stub bool
	// ValueSize is a stub's value length in bytes.
	ValueSize int
	// ValueDigest is a stub's value digest: ValueDigest(value).
	ValueDigest [32]byte
}

// ErrNotFetched reports a record this device holds as a stub: its
// version is here, its value stays on other devices until the host asks
// for it (Node.Fetch).
var ErrNotFetched = errors.New("value not fetched")

// ValueDigest is the digest of a record value that stubs carry and Merkle
// leaves cover: its SHA-256.
func ValueDigest(value []byte) [32]byte { return sha256.Sum256(value) }

// Digest returns the digest of the record's value, held or not (a
// tombstone's is that of an empty value).
func (r *Record) Digest() [32]byte {
	if r.Stub {
		return r.ValueDigest
	}
	return ValueDigest(r.Value)
}

// Size returns the length of the record's value, held or not.
func (r *Record) Size() int {
	if r.Stub {
		return r.ValueSize
	}
	return len(r.Value)
}

// AsStub returns the record without its value: a stub carrying the
// value's size and digest (a tombstone or a stub is returned as it is).
func (r Record) AsStub() Record {
	if r.Stub || r.Deleted {
		return r
	}
	r.ValueSize, r.ValueDigest = len(r.Value), ValueDigest(r.Value)
	r.Value, r.Stub = nil, true
	return r
}

// Validate checks the host-controlled fields against the limits.
func (r *Record) Validate() error {
	if r.Stub && (len(r.Value) > 0 || r.Deleted || r.ValueSize < 0) {
		return fmt.Errorf("%w: stub with a value, a tombstone flag or a negative size", ErrInvalidArgument)
	}
	return ValidateKey(r.Collection, r.Key, r.Size())
}

// ValidateHostKey checks a write from the host: ValidateKey's limits, and
// the rules on names that the SDK guarantees to every host and every store
// (see the federation package documentation, "Keys and values"): the key
// is not empty, and the collection name and key are valid UTF-8 without a
// NUL byte. Values are opaque bytes of at most MaxValueLen (an empty value
// is allowed; typed collections check their encoding on top of this).
func ValidateHostKey(collection, key string, valueLen int) error {
	if err := ValidateKey(collection, key, valueLen); err != nil {
		return err
	}
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	case !utf8.ValidString(collection) || strings.IndexByte(collection, 0) >= 0:
		return fmt.Errorf("%w: collection name %q is not UTF-8 text without NUL", ErrInvalidArgument, collection)
	case !utf8.ValidString(key) || strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key %q is not UTF-8 text without NUL", ErrInvalidArgument, key)
	}
	return nil
}

// ValidateKey checks a collection name, key and value size.
func ValidateKey(collection, key string, valueLen int) error {
	switch {
	case collection == "":
		return fmt.Errorf("%w: empty collection name", ErrInvalidArgument)
	case len(collection) > MaxCollectionLen:
		return fmt.Errorf("%w: collection name longer than %d bytes", ErrInvalidArgument, MaxCollectionLen)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key longer than %d bytes", ErrInvalidArgument, MaxKeyLen)
	case valueLen > MaxValueLen:
		return fmt.Errorf("%w: value of %d bytes exceeds %d", ErrInvalidArgument, valueLen, MaxValueLen)
	}
	return nil
}

// Change is one entry of a device's changelog: a record version together
// with the transaction it belongs to. A transaction of n changes made by
// device D occupies D's sequence numbers TxnFirst .. TxnFirst+TxnLen-1, so a
// receiver knows when it holds all of it.
type Change struct {
	Record
	// TxnFirst is the sequence number of the transaction's first change.
	TxnFirst uint64
	// TxnLen is the number of changes in the transaction.
	TxnLen uint32
}

// Batch is what a Store commits atomically: changelog entries to append
// (advancing the store's version vector) and the resulting current versions
// of the records they touch. For a local write Records mirrors Changes; when
// applying remote changes Records holds the outcome of conflict resolution.
type Batch struct {
	Changes []Change
	Records []Record
	// Advance, when set, raises the version vector to at least it without
	// changelog entries: after a Merkle repair has installed the records
	// that the missing changes produced. The changelog keeps the changes it
	// holds and has none for the sequence numbers skipped, so Changes shows
	// the jump; advancing costs the same whatever the log's size.
	Advance VersionVector
}

// KeyRange selects keys in [Start, End) of one collection; an empty End means
// no upper bound. Prefix, when set, further restricts keys to that prefix.
type KeyRange struct {
	Start, End string
	Prefix     string
	// IncludeDeleted also yields tombstones.
	IncludeDeleted bool
	// Limit stops after that many records (0: no limit).
	Limit int
}

// Contains reports whether key falls in the range.
func (r KeyRange) Contains(key string) bool {
	if key < r.Start || (r.End != "" && key >= r.End) {
		return false
	}
	return len(key) >= len(r.Prefix) && key[:len(r.Prefix)] == r.Prefix
}
