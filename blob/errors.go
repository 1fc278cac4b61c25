package blob

import (
	"errors"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors, wrapped with context; test with errors.Is.
var (
	// ErrNotFound reports a blob or chunk that the store (or the peer)
	// does not hold.
	ErrNotFound = errors.New("blob not found")
	// ErrIncomplete reports a blob whose manifest is stored but some of
	// whose chunks are not (yet): fetch it.
	ErrIncomplete = errors.New("blob incomplete")
	// ErrCorrupt reports stored or received bytes that fail verification
	// (core.ErrCorrupt, so federation.ErrCorrupt matches it).
	ErrCorrupt = core.ErrCorrupt
	// ErrProtocol reports a malformed or unexpected transfer frame
	// (core.ErrProtocol).
	ErrProtocol = core.ErrProtocol
	// ErrTooLarge reports a blob beyond MaxBlobSize.
	ErrTooLarge = errors.New("blob too large")
)
