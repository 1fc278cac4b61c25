// Package core holds the domain model that every part of the federation SDK
// shares: device identifiers, hybrid logical clock timestamps, version
// vectors, records and changes, collection policies, the pluggable
// interfaces (Store, Transport, Discoverer, Resolver) and the sentinel errors.
//
// It is a leaf package: it imports nothing from this module, so that the
// implementations (the libSQL store, the QUIC transport, ...) can depend on it
// while the root package federation depends on them. Hosts normally use the
// same names through package federation, which re-exports them.
package core
