package core

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the SDK wraps them
// with context using %w.
var (
	// ErrNotFound reports that a record, device or metadata key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrClosed reports use of a node, store, transport or session after Close.
	ErrClosed = errors.New("closed")
	// ErrInvalidConfig reports a Config that New refuses.
	ErrInvalidConfig = errors.New("invalid config")
	// ErrInvalidArgument reports bad input from the host (empty collection
	// name, oversize key or value, ...).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClockDrift reports a remote timestamp further ahead of the local
	// clock than the configured maximum drift; the remote value is refused.
	ErrClockDrift = errors.New("remote clock too far ahead")
	// ErrInvalidDeviceID reports a device id text form that fails to parse or
	// whose check characters do not match (a mistyped id).
	ErrInvalidDeviceID = errors.New("invalid device id")
	// ErrTxnDone reports use of a transaction after its function returned.
	ErrTxnDone = errors.New("transaction already finished")
	// ErrUnauthorized reports a peer that is unknown, untrusted or revoked.
	ErrUnauthorized = errors.New("device not authorized")
	// ErrProtocol reports a malformed or out-of-order message from a peer.
	ErrProtocol = errors.New("protocol violation")
	// ErrVersionMismatch reports that the peer speaks an incompatible
	// protocol version.
	ErrVersionMismatch = errors.New("protocol version mismatch")
	// ErrFrameTooLarge reports a frame above the negotiated maximum size.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrHandshake reports a failed authentication handshake.
	ErrHandshake = errors.New("handshake failed")
	// ErrCorrupt reports stored or received data that fails verification.
	ErrCorrupt = errors.New("data corrupt")
	// ErrLocked reports a node directory or store file already in use by
	// another node, in this process or another one.
	ErrLocked = errors.New("already in use by another node")
	// ErrDamaged reports a store that must not be used as it is: its file
	// fails SQLite's checks, holds no identity or another device's identity
	// where one was created, or has rolled back behind commits it had
	// acknowledged (a lost or cut WAL, or an older file put in its place).
	ErrDamaged = errors.New("store damaged")
	// ErrWrongKey reports a store file that its encryption key does not
	// open: a wrong key, a key given for a file that is not encrypted, or
	// no key for a file that is.
	ErrWrongKey = errors.New("wrong encryption key")
)

// NoticeError is a refusal that carries a notice for the refused peer: a
// short self-authenticating message, such as the signed registry operation
// that revoked the peer, which the transport sends with its refusal
// (Authorizer errors may be one). The refused side finds it with
// errors.As on its Dial error; it must verify the notice itself, since the
// refusal is not authenticated.
type NoticeError struct {
	Err    error
	Notice []byte
}

// Error is the refusal's text.
func (e *NoticeError) Error() string { return e.Err.Error() }

// Unwrap returns the refusal.
func (e *NoticeError) Unwrap() error { return e.Err }
