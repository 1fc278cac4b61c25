package blob

import "errors"

// Sentinel errors, wrapped with context; test with errors.Is.
var (
	// ErrNotFound reports a blob or chunk that the store (or the peer)
	// does not hold.
	ErrNotFound = errors.New("blob not found")
	// ErrIncomplete reports a blob whose manifest is stored but some of
	// whose chunks are not (yet): fetch it.
	ErrIncomplete = errors.New("blob incomplete")
	// ErrCorrupt reports stored or received bytes that fail verification.
	ErrCorrupt = errors.New("blob data corrupt")
	// ErrProtocol reports a malformed or unexpected transfer frame.
	ErrProtocol = errors.New("blob transfer protocol violation")
	// ErrTooLarge reports a blob beyond MaxBlobSize.
	ErrTooLarge = errors.New("blob too large")
)
