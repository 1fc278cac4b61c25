package federation

import (
	"github.com/devicemesh/federation/internal/syncer"
)

// The per-peer sync protocol lives in internal/syncer. This file runs one
// syncer.Session per trusted session, keeps the node's table of sessions,
// and adapts the node to the small interfaces a Session works against
// (syncer.Replica, Audit, Events, Policy, Links). The adapters are thin on
// purpose: each method is one of the node's own.

// Errors of the sync protocol, as the host sees them.
var (
	// ErrPendingTooLarge reports a peer whose incomplete transactions
	// exceed the per-session buffer.
	ErrPendingTooLarge = syncer.ErrPendingTooLarge
	// ErrStalled reports a peer that stopped part-way: it sent no whole
	// SyncHello within Limits.HelloTimeout of the session's start (it
	// opened no stream, or said nothing on it), or it stopped in the middle
	// of a frame for longer than Limits.FrameTimeout. Its session is
	// closed.
	ErrStalled = syncer.ErrStalled
	// ErrTimeout reports a peer that did not answer a sync request in time.
	ErrTimeout = syncer.ErrTimeout
)
