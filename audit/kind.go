package audit

import "fmt"

// Kind says what an audit entry records.
type Kind uint8

// Entry kinds. The zero Kind is invalid so that a forgotten field is caught.
const (
	// KindSessionOpened: a sync session with Device was established.
	KindSessionOpened Kind = iota + 1
	// KindSessionClosed: the session with Device ended.
	KindSessionClosed
	// KindBatchSent: a batch of changes went to Device (Detail: counts);
	// a sync session sums the batches that follow one another closely
	// into one entry (Detail: their total counts).
	KindBatchSent
	// KindBatchReceived: a batch of changes came from Device (Detail:
	// counts), summed like KindBatchSent.
	KindBatchReceived
	// KindConflictDetected: concurrent versions were found.
	KindConflictDetected
	// KindConflictResolved: a conflict was settled (by resolver or host).
	KindConflictResolved
	// KindRegistryOp: a registry operation (add, revoke, rename, ...) was
	// applied.
	KindRegistryOp
	// KindRefusal: a device, session or message was refused.
	KindRefusal
	// KindPairing: a pairing step (invitation, approval, rejection).
	KindPairing
	// KindRestored: the device's store was restored from a backup
	// (federation.Restore) and a new epoch of signed heads began (Detail:
	// the backup's head "seq" and "hash", the new "epoch"). The entries
	// the device wrote after the backup are gone; this entry says so.
	KindRestored
	kindEnd
)

var kindNames = [...]string{
	KindSessionOpened:    "session-opened",
	KindSessionClosed:    "session-closed",
	KindBatchSent:        "batch-sent",
	KindBatchReceived:    "batch-received",
	KindConflictDetected: "conflict-detected",
	KindConflictResolved: "conflict-resolved",
	KindRegistryOp:       "registry-op",
	KindRefusal:          "refusal",
	KindPairing:          "pairing",
	KindRestored:         "restored",
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k > 0 && k < kindEnd }

// String returns the kind's stable name, as stored and hashed.
func (k Kind) String() string {
	if !k.Valid() {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for k := Kind(1); k < kindEnd; k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown kind %q", ErrInvalidEntry, s)
}
