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
// Value encodings: FieldMerge's JSON layout is documented at FieldMerge,
// Embedding's binary layout at Embedding, and the CRDT layouts in package
// crdt. The package is pure: no I/O, no goroutines, no clock reads;
// Resolution values never alias the conflict's slices.
package conflict
