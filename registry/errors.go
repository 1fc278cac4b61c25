package registry

import (
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors of package registry. Those that refuse an operation or a
// device wrap core.ErrUnauthorized; those about bad bytes wrap
// core.ErrCorrupt or core.ErrInvalidArgument.
var (
	// ErrUnsigned reports an operation without a signature.
	ErrUnsigned = fmt.Errorf("registry operation unsigned: %w", core.ErrUnauthorized)
	// ErrForged reports an operation whose signature does not verify
	// against its author's key.
	ErrForged = fmt.Errorf("registry operation signature invalid: %w", core.ErrUnauthorized)
	// ErrNotAllowed reports an operation its author may not make: unknown,
	// pending or revoked author, or a trust level too low for the change.
	ErrNotAllowed = fmt.Errorf("registry operation not allowed: %w", core.ErrUnauthorized)
	// ErrRevoked reports a device that was revoked; revocation is terminal.
	ErrRevoked = fmt.Errorf("device revoked: %w", core.ErrUnauthorized)
	// ErrInvalidOp reports an operation that is malformed (unknown kind,
	// oversized name or policy, inconsistent fields).
	ErrInvalidOp = fmt.Errorf("invalid registry operation: %w", core.ErrInvalidArgument)
	// ErrMalformed reports bytes that do not decode as an operation or an
	// invitation. It wraps core.ErrCorrupt.
	ErrMalformed = fmt.Errorf("malformed registry data: %w", core.ErrCorrupt)
	// ErrTooManyOps reports a State that holds MaxOps operations already.
	ErrTooManyOps = fmt.Errorf("too many registry operations: %w", core.ErrInvalidArgument)
	// ErrNoSecret reports a device that holds no sealed copy of the current
	// mesh secret (it was revoked, or added after the last rotation).
	ErrNoSecret = fmt.Errorf("no mesh secret for this device: %w", core.ErrUnauthorized)

	// ErrMalformedCode reports a pairing code that fails its check
	// character or has the wrong length (most likely a typo).
	ErrMalformedCode = fmt.Errorf("malformed pairing code: %w", core.ErrInvalidArgument)
	// ErrWrongCode reports a well-formed pairing code that matches no
	// outstanding invitation.
	ErrWrongCode = fmt.Errorf("wrong pairing code: %w", core.ErrUnauthorized)
	// ErrCodeUsed reports a pairing code that was already redeemed.
	ErrCodeUsed = fmt.Errorf("pairing code already used: %w", core.ErrUnauthorized)
	// ErrCodeExpired reports a pairing code past its expiry.
	ErrCodeExpired = fmt.Errorf("pairing code expired: %w", core.ErrUnauthorized)
	// ErrTooManyAttempts reports a tracker that burned its invitations
	// after too many wrong codes.
	ErrTooManyAttempts = fmt.Errorf("too many wrong pairing codes: %w", core.ErrUnauthorized)
)
