package merkle

import (
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors. Each wraps the core sentinel a caller is most likely to
// test for, so errors.Is(err, core.ErrProtocol) and errors.Is(err,
// ErrMalformed) both hold for a bad message.
var (
	// ErrMalformed reports a request or response that does not decode: bad
	// magic, truncated fields, trailing bytes, non-canonical prefixes.
	ErrMalformed = fmt.Errorf("merkle: malformed message: %w", core.ErrProtocol)
	// ErrLimit reports a message that decodes but exceeds a protocol limit
	// (too many items, too deep an expansion, an oversize key).
	ErrLimit = fmt.Errorf("merkle: message exceeds limit: %w", core.ErrProtocol)
	// ErrUnexpected reports a response that is well formed but does not
	// answer the request it is paired with, or contradicts it (keys outside
	// the listed range, out of order, no progress).
	ErrUnexpected = fmt.Errorf("merkle: response does not match request: %w", core.ErrProtocol)
	// ErrCorrupt reports a snapshot that fails to decode or whose entries do
	// not hash to the root it records.
	ErrCorrupt = fmt.Errorf("merkle: snapshot: %w", core.ErrCorrupt)
	// ErrDone reports a call to Reconciler.Next after reconciliation ended.
	ErrDone = errors.New("merkle: reconciliation already finished")
)
