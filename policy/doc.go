// Package policy plans what a device sends to each of its peers: which
// collections travel to a peer at all, when (immediately, on a timer),
// and in which order when a backlog exists. It is pure: collection
// policies, device policies and the peer's backlog come in as arguments,
// the time too; it does no I/O, starts no goroutine and reads no clock.
//
// # Pieces
//
// A Table holds the collection policies (core.Policy: priority, mode,
// interval, resolver) of one node: the host's choices (Set), prefixes the
// node keeps for itself (Reserve: its internal collections stay
// local-only), collections the mesh itself runs on (Pin: the device
// registry reaches every device, high and immediate), a fallback for
// every other name, and per-device overrides (SetDevice, from the device
// registry's sync policy, see ParseDevice). Table.Policy is the table
// without overrides: it decides a collection's resolver and whether it
// ever leaves the device. Table.Decide applies a peer's overrides: an
// override may keep a collection from one peer or change its priority or
// mode towards it, never send what is local-only, never touch a pin.
//
// A Planner answers the per-peer sender's questions from a table: Admit
// (does a collection travel to this peer), When and Decision.Due (when
// may its changes go out: immediate and on-demand always, periodic once
// its interval passed since the previous flush, local-only never), Sort
// (the order of a walk over collections: repair, first sync), and Queue,
// the ordering primitive of one sender: given each collection's backlog,
// Queue.Next names the collection to send from next, highest priority
// first, strictly, and by weighted fair share among collections of equal
// priority; Queue.Sent charges what went out.
//
// # Periodic batches in the syncer
//
// The syncer honours Decision.Due per peer (internal/syncer,
// sync_batch.go): the in-order stream of an origin stops before the first
// transaction touching a periodic collection that is not due, a timer on
// the node's clock wakes the sender when it falls due, and everything
// written meanwhile goes out in one flush; transactions of other
// collections behind it go ahead as Priority frames (below). Queue plans
// the same rule among collections for a sender that sends per collection.
//
// # Values that stay behind: stubs (selective sync)
//
// Three cases send a change to a peer without its value: the collection
// is on-demand (core.ModeOnDemand: keys, sizes and digests travel, values
// when the host asks), it is summary towards the peer (core.ModeSummary:
// only the versions the host marked as summaries travel whole), or a
// device override keeps it from the peer (Mode local-only in the peer's
// sync policy). Decision.Carry decides per (peer, collection, record):
// CarryValue, or CarryDigest for a stub; CarryNothing only for what never
// leaves the device, which takes no sequence number at all.
//
// A stub is a change with everything but its value: the dot (origin,
// sequence), transaction bounds, timestamp, causal context, collection,
// key, the tombstone and summary flags, the value's size and its SHA-256
// (core.Record.Stub, ValueSize, ValueDigest, Summary). It enters the
// receiver's changelog and raises its version vector like any change, so
// the vector stays contiguous: Acks, CaughtUp checks, forwarding and the
// gap-to-repair path are untouched. A receiver stores a stub as the
// record's current version, a record with metadata and no value (both
// stores keep the flag, size and digest in the record and in the
// changelog entry; the storetest conformance suite checks it), merges it
// by causal context like a full version, and forwards it as a stub.
//
// Merkle leaves cover a value only through its digest: RecordDigest
// hashes collection, key, the SHA-256 of the value, the flags, timestamp,
// origin, sequence and context. A stub carries that digest, so its leaf
// equals the full record's, and a partial replica's roots equal a full
// replica's: CaughtUp reports no divergence, and a repair, which only
// exchanges keys whose leaves differ, never pulls a value the policy left
// behind. Records a repair pushes travel under the same Carry rule.
//
// Values come later, on request. The receiving node keeps a durable
// wanted list (a local-only internal collection, so it survives a
// restart), written by Node.Fetch, by the backfill, and right after a
// commit that installs stubs of a collection the device wants whole,
// once the work that commit's observers handed off is done (a registry
// operation in the same batch may change what the device wants; a crash
// in between is made good by the backfill at the next open). A session asks its peer for the wanted keys it has not asked yet (Want
// frame), after its hello and whenever the list grows (a key a peer did
// not hold is asked of it again after 30 s); the peer answers every key
// (Values frame) with the value and the version (origin, sequence) of
// what it holds whole, or "missing" (it holds a stub, or nothing). The
// receiver installs a value of its stub's version only if it matches the
// stub's size and digest, in one commit that also drops the wanted entry;
// a value that does not match is refused (audited as a refusal) and the
// key stays wanted, to be asked of the next peer; a value of another
// version is not a lie but a race: the key is asked again once this
// device's version changes. A newer version of the key
// supersedes an entry: an entry whose key holds no stub any more is
// dropped, and one whose stub changed wants the new digest. Every new
// session asks again, so a key is served by whichever connected peer
// holds it.
//
// Backfill: a device wants every value of a collection whose own
// decision (its table, with its own device policy applied) carries
// values; stubs of such a collection go on the wanted list as they
// arrive, and when a policy changes to carry values (host Config at
// open, a device policy in the registry) every stub of the collection is
// put on it (the node remembers which collections hold stubs).
//
// Concurrent versions of which one is a stub cannot be merged by a value
// resolver: they settle by last-writer-wins on every device (a summary
// or on-demand collection whose resolver merges values keeps that merge
// for devices that hold both values; a device holding a stub settles by
// version, which may differ until it fetches the key).
//
// # Overtaking on one session: the syncer's side of priorities
//
// A device's changes travel per origin in sequence order, and a receiver's
// version vector says "every change of origin o up to n": it must stay
// contiguous, or Acks, CaughtUp checks, forwarding to third devices and
// the gap-to-repair path all go wrong. A high-priority write queued behind
// 10,000 low-priority ones of the same origin therefore cannot simply be
// sent first as a change. The syncer lets it overtake as follows:
//
//  1. The sender knows which recent commits are urgent without reading
//     the log: an observer of every commit keeps the dots (origin,
//     sequence) of the latest changes of top-priority collections, at
//     most 1,024 (older ones just wait for the stream).
//  2. Between two frames of an origin's in-order stream, the sender
//     compares the priority (Planner.Priority, per peer) of the next
//     change of the stream with those recent dots. A dot's whole
//     transaction overtakes when it is of a strictly higher priority,
//     the peer lacks it, it is not next in line anyway, it is not the
//     peer's own, it is admitted to the peer, and every change of other
//     origins in its causal context is at the peer already (the rule the
//     stream applies before every change). It goes out alone in a
//     Priority frame (wire type 0x1C, encoded as Changes), and the sender
//     remembers its span (at most 256 per session).
//     The receiver reads its stream in order, so a Priority frame waits
//     behind the Changes frames sent before it: while the stream's next
//     change is of a priority something may overtake, the sender paces
//     it (frames of at most 256 changes, and no more than 1,024 changes
//     of transactions the peer can commit sent and not acknowledged;
//     internal/syncer/sync_pace.go). A Priority frame then waits behind
//     about one backlog commit, not behind the megabytes the transport
//     would queue; which frames leave, and in what order, is unchanged.
//  3. The receiver applies a Priority transaction at once as record
//     versions, merged by causal context in one atomic commit (as a
//     Merkle repair's records are): the host sees the records and gets
//     their events now. It writes no changelog entry and does not raise
//     the version vector: it holds the transaction in memory (at most
//     1,024 transactions, 64 MiB; more is a protocol error) as an
//     exception to its contiguous vector. One that is next in line is
//     simply applied; one it holds already (from another peer) is
//     dropped.
//  4. When the in-order stream reaches a span, the sender skips it (the
//     peer holds it: each change still travels once, so the echo and
//     redundancy counters stay at zero). The receiver splices the held
//     transaction into the stream where it belongs, before the first
//     transaction that follows it or after the last that precedes it,
//     also when its predecessors came from another peer (before every
//     CaughtUp check), and commits it in order through the ordinary
//     apply path: merging it again changes no record, and the changelog
//     and version vector now include it, contiguously.
//  5. Failures fall back on what exists: a session that ends loses only
//     the held copies; the next session starts from the receiver's
//     contiguous vector and sends those transactions in order. A lost
//     Priority frame leaves a gap in the stream, which ends the session
//     like any lost frame; a duplicated one is ignored.
//
// The window between steps 3 and 4, like the Merkle repair path, holds
// versions the device's version vector does not cover. A host write to
// such a key must still supersede them, or it would be settled as
// concurrent with the version it replaces (and, under a manual resolver,
// a user's resolution of a conflict that arrived early would raise the
// conflict again everywhere). The replica's commit pipeline therefore
// keeps, per key, the contexts installed ahead of the vector (received
// versions and merge outcomes alike) and merges them into a local
// write's context until the vector covers them (internal/replica,
// early.go).
//
// Per-collection streams were the other candidate (one ordered stream per
// collection and origin, each with its own sequence numbers): they make
// priorities free but change the changelog, the version vectors and the
// repair protocol everywhere, for a gain the exception scheme gets with
// one frame type. A change kept from a peer travels as a stub (above), so
// the peer's vector stays contiguous without the value.
package policy
