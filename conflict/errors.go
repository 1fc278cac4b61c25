package conflict

import "errors"

// Sentinel errors returned (wrapped with context) by this package. Test for
// them with errors.Is.
var (
	// ErrMalformed reports a record value that does not decode as the
	// encoding its collection's strategy expects. Values arrive from other
	// devices, so this is an expected error, never a panic; the underlying
	// decoder's error is wrapped too.
	ErrMalformed = errors.New("malformed value")
	// ErrIncompatible reports two well-formed values that cannot be merged,
	// such as personality vectors of different dimensions.
	ErrIncompatible = errors.New("incompatible values")
	// ErrInvalidArgument reports bad input from the host: an empty field
	// name, a nil resolver, a non-finite vector component.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnknownStrategy reports a strategy name ByName does not know.
	ErrUnknownStrategy = errors.New("unknown resolution strategy")
)
