package discovery

import (
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors of package discovery, for errors.Is.
var (
	// ErrNotMember reports a sealed announcement this mesh secret does not
	// open: another mesh's, an older generation's, or damaged bytes.
	ErrNotMember = fmt.Errorf("announcement not readable by this mesh: %w", core.ErrUnauthorized)
	// ErrUnknownDevice reports an announcement from a device the registry
	// does not trust.
	ErrUnknownDevice = fmt.Errorf("announcement from an untrusted device: %w", core.ErrUnauthorized)
	// ErrForged reports an announcement whose signature does not verify
	// against the key the registry holds for its device.
	ErrForged = fmt.Errorf("announcement signature invalid: %w", core.ErrUnauthorized)
	// ErrStale reports an announcement older than the accepted age, from too
	// far in the future, or older than one already accepted (a replay).
	ErrStale = fmt.Errorf("announcement stale or replayed: %w", core.ErrUnauthorized)
	// ErrMalformed reports bytes that do not decode as an announcement.
	ErrMalformed = fmt.Errorf("malformed announcement: %w", core.ErrCorrupt)
	// ErrTooLarge reports an announcement whose addresses do not fit.
	ErrTooLarge = fmt.Errorf("announcement too large: %w", core.ErrInvalidArgument)
	// ErrNoSecret reports a mesh with no secret yet: nothing to derive from.
	ErrNoSecret = fmt.Errorf("no mesh secret to discover with: %w", core.ErrUnauthorized)
)
