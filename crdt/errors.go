package crdt

import (
	"errors"
	"fmt"
)

// Sentinel errors returned (wrapped with context) by this package. Test for
// them with errors.Is.
var (
	// ErrMalformed reports an encoding that does not decode: truncated,
	// unknown tag or version, out-of-range fields, or a non-canonical form
	// (unsorted or duplicate entries, unused devices). Encodings arrive from
	// the network, so this is an expected error, never a panic.
	ErrMalformed = errors.New("malformed crdt encoding")
	// ErrInvalidArgument reports bad input from the caller: a NaN or
	// infinite number, a non-positive weight, an empty message id.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrDimension reports weighted-average registers or samples whose
	// vector lengths differ.
	ErrDimension = errors.New("dimension mismatch")
	// ErrOverflow reports a counter or sum that would leave its range.
	ErrOverflow = errors.New("overflow")
	// ErrUnknownMessage reports an edit or delete of a message id the log
	// does not hold.
	ErrUnknownMessage = errors.New("unknown message")
)

// wrapDecode adds the type name to a decoding error.
func wrapDecode(kind string, err error) error {
	return fmt.Errorf("decode %s: %w", kind, err)
}
