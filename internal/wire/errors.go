package wire

import "errors"

// ErrBusy reports a peer refused for load: too many sessions with that
// device or too many handshakes in progress.
var ErrBusy = errors.New("peer busy")
