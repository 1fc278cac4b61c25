package audit

import (
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors of package audit.
var (
	// ErrTampered reports an audit log whose hash chain does not verify: a
	// row was edited, deleted, inserted or reordered. It wraps
	// core.ErrCorrupt.
	ErrTampered = fmt.Errorf("audit log tampered: %w", core.ErrCorrupt)
	// ErrInvalidEntry reports an entry that Append refuses (unknown kind,
	// oversized or free-text detail). It wraps core.ErrInvalidArgument.
	ErrInvalidEntry = fmt.Errorf("invalid audit entry: %w", core.ErrInvalidArgument)
	// ErrMalformedDetail reports a stored detail encoding that does not
	// parse. It wraps core.ErrCorrupt.
	ErrMalformedDetail = fmt.Errorf("malformed audit detail: %w", core.ErrCorrupt)
	// ErrForgedHead reports a signed audit head whose signature does not
	// verify against its key. It wraps core.ErrUnauthorized.
	ErrForgedHead = fmt.Errorf("forged audit head: %w", core.ErrUnauthorized)
	// ErrMalformedHead reports a signed audit head encoding that does not
	// parse. It wraps core.ErrCorrupt.
	ErrMalformedHead = fmt.Errorf("malformed audit head: %w", core.ErrCorrupt)
	// errConflict reports a backend insert that lost a race with another
	// writer of the same table (a sequence number already taken).
	errConflict = errors.New("audit sequence number already taken")
)

// TamperError names the first row of the log that fails verification.
type TamperError struct {
	// Seq is the sequence number of the first bad row (for a deleted row,
	// the sequence number that is missing).
	Seq uint64
	// Reason says what did not fit, for humans.
	Reason string
}

// Error describes the bad row.
func (e *TamperError) Error() string {
	return fmt.Sprintf("audit log tampered at seq %d: %s", e.Seq, e.Reason)
}

// Unwrap returns ErrTampered, so errors.Is(err, ErrTampered) and
// errors.Is(err, core.ErrCorrupt) hold.
func (e *TamperError) Unwrap() error { return ErrTampered }
