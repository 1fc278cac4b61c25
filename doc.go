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
// The domain types are defined in package core and re-exported here.
package federation
