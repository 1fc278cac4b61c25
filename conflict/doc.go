// Package conflict holds the conflict-resolution strategies of the
// federation SDK: implementations of core.Resolver, one per data type, and a
// Registry that selects one per collection.
//
// The engine hands a Resolver only truly concurrent versions of a record
// (their causal contexts are concurrent); every strategy here is
// deterministic and symmetric, so each device settles the same conflict
// independently and reaches the same bytes.
//
//	LWW             last-writer-wins by (Timestamp, Origin); Loser names the discarded side for the audit trail
//	FieldMerge      user profile: JSON object, last-writer-wins per field (each field carries its own stamp)
//	Chronological   conversation history: crdt.Log union, ordered by HLC, device, id; deduplicated by id
//	WeightedAverage personality model: crdt.Average, per-device versioned contributions
//	VectorMerge     embeddings: dedupe by content hash, otherwise the later content, marked stale for re-embedding
//	Union           analytics: crdt.GSet, append-only union
//	Manual          defers to the host
//
// Default maps the standard collection names to these; Registry lets a host
// override any collection with its own Resolver; ByName selects a built-in
// strategy from configuration.
//
// The CRDT-backed strategies (everything except LWW and Manual) compute a
// join: the outcome depends on the two values only, so resolving versions
// pairwise in any order on any device gives the same final value. For them a
// tombstone is the empty state, so an update concurrent with a deletion
// survives (deleting everything a device could not have seen would lose
// data); only two concurrent deletions delete. Malformed values give an
// error wrapping ErrMalformed, never a panic.
//
// # Deletions in join collections
//
// The engine keeps one merged version per record, whose causal context is
// the union of what it merged, and lets a causally later version replace
// it. Pairwise merging then gives the same result in every order and
// grouping only if every write moves the value up in the join's order (a
// write of a value below what it replaces is undone, on some devices only,
// by a concurrent version merged before it). A tombstone is the bottom, so
// deleting a live record breaks this: with A = {x} and B = {y} concurrent
// and a deletion D that saw A but not B, merge(merge(A, B), D) = {x, y}
// while merge(D, B) = {y}; equal contexts, different values, for good. No
// rule on the two values (delete-wins, last-writer-wins with the
// deletion) fixes it once a record can be written again after a deletion:
// the merged version no longer says which writes held which elements.
//
// The strategies that can remove what they hold implement Remover (Union,
// Chronological, FieldMerge, VectorMerge), and the engine writes the
// deletion of a live record of theirs as Remove(value): the union with
// every event it held retired for good, the log with every message it held
// marked deleted, the profile with every field it held deleted, a Removed
// embedding stamped with the deletion's time (which a later content wins
// over, an earlier concurrent one loses to). That value is
// above the one it replaces, so merges stay a join: a deletion removes
// exactly what its writer had seen, an entry added concurrently (or after)
// survives it, and every device reaches the same record whatever the
// delivery order. The price: the record stays live (Get returns an empty
// union, a log of deleted messages, a profile without fields or a Removed
// embedding, not ErrNotFound), removed events
// cannot be appended again, and a removed message comes back only through
// a later edit of it. A tombstone is still written when the record is
// absent or already a tombstone; it stays the join's bottom.
// WeightedAverage has no removal: deleting a personality record
// concurrently with an update of it keeps the tombstone's
// order-dependence.
//
// VectorMerge also needs its writes completed (Preparer): its Stale flag
// is derived from two stamps a write carries (see VectorMerge), so that a
// refresh clears it on every device while a concurrent different content
// still sets it on every device; a flag merged as a sticky bit instead was
// set or not depending on whether a device merged a superseded version.
//
// Value encodings: FieldMerge's JSON layout is documented at FieldMerge,
// Embedding's binary layout at Embedding, and the CRDT layouts in package
// crdt. The package is pure: no I/O, no goroutines, no clock reads;
// Resolution values never alias the conflict's slices.
package conflict
