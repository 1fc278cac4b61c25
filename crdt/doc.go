// Package crdt provides the conflict-free replicated data types the
// federation SDK merges records with: a last-writer-wins register (LWW), a
// multi-value register (MVRegister), an add-wins observed-remove set
// (ORSet), a grow-only set (GSet), grow-only and positive-negative counters
// (GCounter, PNCounter), a weighted-average register (Average, for the
// personality model) and an ordered log with chronological merge (Log, for
// conversation history).
//
// Every type has a Merge that is commutative, associative and idempotent,
// so replicas that have received the same updates hold the same state in
// whatever order (and however often) the updates arrived, and a canonical
// binary encoding (Encode, and a DecodeX function per type): equal states
// encode to identical bytes, and a decoder accepts only canonical input, so
// decode(b) succeeding implies encode(decode(b)) == b. This is what lets
// package conflict resolve concurrent record versions independently on every
// device and still reach byte-identical values, which the Merkle trees then
// confirm.
//
// # Encodings
//
// Every encoding starts with a type tag byte and a format version byte
// (currently 1): 0x01 LWW, 0x02 MVRegister, 0x03 ORSet, 0x04 GCounter,
// 0x05 PNCounter, 0x06 Average, 0x07 Log, 0x08 GSet. Integers are unsigned
// LEB128 varints (minimal length only) or, for timestamps and floats, 8
// bytes big-endian; device ids are their 32 raw bytes, or, where many
// entries share few devices, an index into a sorted device table written
// once. Each type's doc comment gives its layout. An empty input decodes to
// the type's empty state. Malformed input yields an error wrapping
// ErrMalformed, never a panic, and decoders allocate no more than the input
// size justifies.
//
// # Purity
//
// The package does no I/O, starts no goroutines and never reads the clock:
// timestamps and device ids come in as arguments. Values are not safe for
// concurrent mutation; callers synchronise.
package crdt
