// Package core holds the domain model that every part of the federation SDK
// shares: device identifiers, hybrid logical clock timestamps, version
// vectors, records and changes, collection policies, the pluggable
// interfaces (Store, Transport, Discoverer, Resolver) and the sentinel errors.
//
// What a Store may do beyond the Store interface is a named optional
// capability (SQLStore, BackupStore, ManyGetter, ChangeCounter), found once
// where the node is built, on the store or along a wrapper's Unwrap chain
// (StoreAs), with a documented fallback when it is missing; never by
// asserting an anonymous interface in the middle of the work.
//
// It is a leaf package: it imports nothing from this module, so that the
// implementations (the libSQL store, the QUIC transport, ...) can depend on it
// while the root package federation depends on them. Hosts normally use the
// same names through package federation, which re-exports them.
package core
