// Package federation keeps one person's data in step across that person's
// own devices, peer to peer, with nothing readable by any server, relay or
// network observer.
//
// A host builds one Node with New and uses it like a small embedded
// database: Put, Get, Delete, Update (an atomic transaction), Scan and
// Subscribe. Every write gets a hybrid logical clock timestamp, the device's
// next changelog sequence number and a causal context (a version vector), so
// that devices exchanging changes can tell a newer version from a concurrent
// one and converge.
//
// A Node is assembled from pluggable interfaces, each with a real default and
// an in-memory twin for tests:
//
//	Store       durable records, changelog and metadata (libSQL file; memstore)
//	Transport   authenticated sessions between devices (QUIC + Noise; in-memory)
//	Discoverer  finding the user's devices (mDNS, DHT; static)
//	Resolver    per-collection conflict resolution (LWW and richer merges)
//
// Sequence numbers belong to a replica incarnation, not to the device. The
// open of a store that creates the device's identity writes under the
// device id; every later open mints, at its first write that syncs, a new
// replica id (SHA-256 of a domain string, the device id and a random nonce,
// announced to peers in the internal collection _fed.replicas, where anyone
// can check the hash) and counts from 1 under it. No store can prove it is
// the latest copy of itself: a backup, a VM snapshot or a copied folder is
// bit for bit what the store once was, and the newer copies may be
// offline. With a fresh replica per open, a store started from an older
// copy never gives a new write a (replica, sequence) pair that a peer holds
// with other content, so peers never skip its writes and it never skips
// theirs; the earlier incarnations' writes it lacks come back from its
// peers through the ordinary delta path, since its version vector is lower
// for them. Record.Origin and version-vector keys are replica ids; events
// and audit entries name the device (Node.OriginDevice). Each incarnation
// that writes costs one version-vector entry on every device (figures and
// what folding retired incarnations needs: README, "Backups and
// restores"). Node.Backup and Restore copy and put back a running node's
// store.
//
// # Keys and values
//
// A collection name is 1 to MaxCollectionLen bytes and a key 1 to
// MaxKeyLen bytes, both valid UTF-8 without a NUL byte; names starting
// with "_fed." belong to the SDK. A value is opaque bytes, 0 to
// MaxValueLen (4 MiB; larger media travels as chunked blobs). The typed
// collections (profile, conversations, personality, embeddings, analytics)
// hold their resolver's encoding, and Put refuses anything else with
// ErrInvalidArgument (conflict.Validator): write them with the typed
// helpers (Node.Profile, Node.Conversation, Node.Personality,
// Node.Embeddings, Node.Analytics) or the conflict and crdt encoders.
// Config.StrictCollections makes an unknown collection name an error.
//
// The domain types are defined in package core and re-exported here.
package federation
