package transport

import (
	"errors"

	"github.com/devicemesh/federation/internal/wire"
)

// ErrBusy reports a peer refused for load: it already holds
// Limits.MaxSessionsPerPeer sessions, or too many handshakes are in progress.
var ErrBusy = wire.ErrBusy

// ErrUnknownAddr reports a Mem address no transport listens on.
var ErrUnknownAddr = errors.New("no transport at address")
