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
// # Modes still to come
//
// The selective-sync issue fills in the modes that send less than every
// value: on-demand (keys and digests travel, values when the host asks)
// and summary (per device, for conversations). Decision.Carry is where
// they slot in (CarryDigest is reserved for them); until the syncer can
// send a change without its value, on-demand collections travel whole,
// as before, and a device override that keeps a collection from a peer
// (Mode local-only) is planned here but needs that same ability to be
// honoured: a change's sequence number must still reach the peer, or its
// version vector would have a hole (see the design below).
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
// The window between steps 3 and 4 has one weakness, shared with the
// Merkle repair path: a host write on this device to a key that was
// applied early gets the device's version vector as its causal context,
// which does not cover the early version, so the two are settled as
// concurrent (by the collection's resolver; last-writer-wins picks the
// host's write, since the clock followed the early version). The fix,
// left to the replica's commit pipeline, is to give a local write the
// context of the version it replaces merged into the vector.
//
// Per-collection streams were the other candidate (one ordered stream per
// collection and origin, each with its own sequence numbers): they make
// priorities free but change the changelog, the version vectors and the
// repair protocol everywhere, for a gain the exception scheme gets with
// one frame type. The same exception scheme carries the modes still to
// come: a change kept from a peer (local-only for that device, on-demand
// without its value) travels as its dot and digest, so the peer's vector
// stays contiguous without the value.
package policy
