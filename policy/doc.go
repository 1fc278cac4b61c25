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
package policy
