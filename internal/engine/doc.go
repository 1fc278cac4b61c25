// Package engine holds the node's assembly pieces that are neither the
// façade (package federation) nor one of the rooms (internal/replica,
// internal/syncer, internal/peers, internal/anchor, internal/devices): the
// guard on the node's directory, and the backup and restore of a directory.
package engine
