package pairing

import (
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// Sentinel errors of package pairing. Problems with the code itself are
// reported with the registry's sentinels (registry.ErrWrongCode,
// registry.ErrCodeUsed, registry.ErrCodeExpired, registry.ErrTooManyAttempts,
// registry.ErrMalformedCode); a refusal received from the other device wraps
// ErrRefused and the sentinel for its reason, so
// errors.Is(err, registry.ErrCodeUsed) holds on both devices.
var (
	// ErrRefused reports that the other device refused the pairing; the
	// error also wraps the reason (one of the sentinels above).
	ErrRefused = fmt.Errorf("pairing refused by the other device: %w", core.ErrUnauthorized)
	// ErrDeclined reports that a user said no: Approve on the inviting
	// device or Confirm on the joining one returned false.
	ErrDeclined = fmt.Errorf("pairing declined by the user: %w", core.ErrUnauthorized)
	// ErrWrongInviter reports a session whose peer is not the device that
	// issued the invitation: the joiner sends nothing to it.
	ErrWrongInviter = fmt.Errorf("peer is not the device that issued the invitation: %w", core.ErrUnauthorized)
	// ErrInviterUnproven reports an inviting device that could not prove it
	// knows the pairing code bound to this session.
	ErrInviterUnproven = fmt.Errorf("inviting device does not know the pairing code: %w", core.ErrUnauthorized)
	// ErrAborted reports a pairing the other device gave up for a reason of
	// its own (its callback failed, its context ended).
	ErrAborted = errors.New("pairing aborted by the other device")
)

// refuseCode is the reason carried by a Refuse message.
type refuseCode uint8

// Refusal codes, as sent on the wire (see the package doc).
const (
	refuseWrongCode   refuseCode = 1
	refuseCodeUsed    refuseCode = 2
	refuseExpired     refuseCode = 3
	refuseTooMany     refuseCode = 4
	refuseDeclined    refuseCode = 5
	refuseProtocol    refuseCode = 6
	refuseAborted     refuseCode = 7
	refuseUnproven    refuseCode = 8
	refuseCodeMaximum            = refuseUnproven
)

// String names the code.
func (c refuseCode) String() string {
	if e := c.err(); e != nil {
		return e.Error()
	}
	return fmt.Sprintf("refusal(%d)", uint8(c))
}

// err is the sentinel a code stands for (nil for an unknown code).
func (c refuseCode) err() error {
	switch c {
	case refuseWrongCode:
		return registry.ErrWrongCode
	case refuseCodeUsed:
		return registry.ErrCodeUsed
	case refuseExpired:
		return registry.ErrCodeExpired
	case refuseTooMany:
		return registry.ErrTooManyAttempts
	case refuseDeclined:
		return ErrDeclined
	case refuseProtocol:
		return core.ErrProtocol
	case refuseAborted:
		return ErrAborted
	case refuseUnproven:
		return ErrInviterUnproven
	}
	return nil
}

// codeFor picks the code that tells the other device why we stop. Only the
// sentinel's meaning crosses the wire, never our error text.
func codeFor(err error) refuseCode {
	for c := refuseWrongCode; c <= refuseCodeMaximum; c++ {
		if c != refuseAborted && errors.Is(err, c.err()) {
			return c
		}
	}
	return refuseAborted
}
