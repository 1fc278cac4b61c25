// Package merkle keeps, per collection, a Merkle tree over the record
// digests and reconciles two such trees over the network: equal roots prove
// that two devices hold identical records, and descending the trees where
// they differ finds the differing keys when changelog deltas cannot
// (changelog compacted, partial replica, device restored from a backup).
// See "Sync protocol" step 3 and "Metadata budget" in the design.
//
// It is pure: no I/O, no goroutines, no clocks. Randomness (the session
// salt) comes in as an argument.
//
// # Structure
//
// Every key has a position, the first 8 bytes of SHA-256(0x01 || key), so
// keys spread uniformly whatever their text. A node of the tree is a
// position prefix (Prefix): the root covers all positions, its 16 children
// the positions starting with each hex digit, and so on down to depth 16.
// Each node holds the number of keys in its range and the sum modulo 2^256
// of their entry hashes, where
//
//	entry hash = SHA-256(0x02 || uvarint(len(key)) || key || record digest)
//	record digest = RecordDigest(record)   // everything that must converge
//	root = SHA-256(0x03 || u64le(count) || sum of all entry hashes)
//
// Because the sum is order-independent, Set and Delete add or subtract one
// entry hash along the key's path: O(depth) word additions plus two
// SHA-256 calls, never a rebuild. Because a node is defined by its range and
// not by the shape of the tree, two trees agree on every node's hash and
// count whenever they hold the same entries, however each has split its
// leaves. Locally, a range holding more than 64 keys is split into 16
// children and one falling to 24 is merged back, so a million keys make a
// tree four levels deep with about 15 keys a leaf; ranges deeper than a leaf
// are summed from the leaf's entries on demand.
//
// Why addition and not XOR: XOR is addition in GF(2)^256, so among any 257
// entry hashes some subset XORs to zero, and Gaussian elimination finds a set
// of records matching any target hash in polynomial time; two equal entries
// also cancel, so a bug that counts an entry twice is invisible. Addition
// modulo 2^256 has no such linear structure and x+x is not 0. It is still a
// multiset hash and not a collision-resistant one: an attacker who could
// insert many chosen records could use Wagner's generalized-birthday
// algorithm to aim the sum. Only the user's authenticated devices write
// records, so the threat here is accidental divergence, against which a
// chance collision has probability about 2^-256; the root also commits to
// the count.
//
// Why fan-out 16: finding d differences among n keys costs about d *
// fanout * log_fanout(n/d) node summaries and log_fanout(n/d) round trips.
// fanout/ln(fanout) is 2.9 for 2, 5.8 for 16 and 46 for 256: 16 costs twice
// the bytes of a binary tree for a quarter of its rounds, while 256 costs
// eight times the bytes of 16 to save half the rounds. A nibble is also
// cheap to encode, and a request can ask for 2 or 3 levels at once (256 or
// 4096 descendants) when the difference is small enough that bytes are no
// concern.
//
// # Reconciliation
//
// One side drives (Reconciler), the other answers statelessly
// (Tree.Respond). Each round is one Request and one Response:
//
//  1. The first request carries the requester's root. A responder with the
//     same root answers Converged (2 bytes) and the session ends.
//  2. Otherwise the responder returns, for each node the requester asked to
//     expand k levels, the count and a salted, truncated fingerprint of the
//     hash of each of its 16^k descendants; for each range the requester
//     asked to list, its keys with fingerprints of their entry hashes.
//  3. The requester compares every descendant with its own. Equal ones are
//     done. One the remote has no keys in makes all local keys there
//     local-only, at no further cost. One the local side has no keys in, or
//     whose remote count is small enough that listing costs less than one
//     more expansion, is listed next round. Others are expanded next round,
//     by as many levels (up to 3) as the round's byte budget allows; when
//     listing all remaining candidates fits the budget they are listed at
//     once, ending the session a round or more early.
//  4. Listing a range compares keys and entry fingerprints: remote-only,
//     local-only and changed keys. A listing cut short by the responder's
//     ListBudget is continued from its last key.
//
// The result (Diff) names keys only; the sync engine then exchanges those
// records and resolves them by their causal contexts. A fingerprint
// collision (probability 2^(-8*FPLen) per compared pair) can hide a
// difference; after repair the roots are compared again, and a fresh salt
// in the next session makes the same collision vanishingly unlikely.
// With the default Config, a million keys of which 100 records differ
// reconcile in 5 rounds and about 46 KB of requests and responses
// (TestReconcileMillion logs the figures, and those of other settings).
//
// # Wire format
//
// Integers marked uvarint are unsigned LEB128 as in encoding/binary, and
// must be minimal. A prefix is encoded as one byte n (0..16, the number of
// nibbles) followed by ceil(n/2) bytes holding the nibbles, most significant
// first; an unused low nibble must be zero. A fingerprint of length F is the
// first F bytes of SHA-256(0x04 || u64le(salt) || hash).
//
// Request:
//
//	offset 0   1 byte   0xa1 (request, version 1)
//	offset 1   8 bytes  salt, little-endian
//	offset 9   1 byte   F, fingerprint length, 4..8
//	offset 10  1 byte   flags: 0, or 1 when a root follows
//	offset 11  32 bytes requester's root (only when flags is 1)
//	then       uvarint  E, expand items (at most MaxExpandItems)
//	           E times: 1 byte depth k (1..3, and n+k <= 16), prefix
//	then       uvarint  L, list items (at most MaxListItems)
//	           L times: prefix, uvarint c, c-1 bytes of cursor key when c > 0
//	                    (list keys after that key; c = 0: from the start)
//
// The 16^k answers of all expand items together are at most MaxSummaries.
//
// Response (its shape follows the request it answers):
//
//	offset 0   1 byte   0xa2 (response, version 1)
//	offset 1   1 byte   flags: 1 = converged (the message ends here), 0 = not
//	then, for each expand item in order, its 16^k descendants in position
//	order, each: uvarint count, then F bytes fingerprint when count > 0
//	then, for each list item in order: uvarint h = entries<<1 | more, and
//	entries times: uvarint key length (at most core.MaxKeyLen), key, F bytes
//	fingerprint, in (position, key) order
//
// Nothing may follow. Decoders check every length against the bytes that
// remain before allocating, so a hostile peer cannot make them panic or
// allocate more than its message size warrants; the reconciler also
// refuses listed keys outside the requested range, out of order, or a
// listing that makes no progress.
//
// # Snapshots
//
// AppendSnapshot encodes the tree as "MKS1", uvarint(count), then per key
// in position order uvarint(len(key)) || key || entry hash, then the root;
// Restore rebuilds it in linear time and checks the root. A host without a
// snapshot rebuilds the tree by calling Set for each (key, RecordDigest)
// streamed from its store.
package merkle
