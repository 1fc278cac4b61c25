package federation

import (
	"context"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
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

// syncerConfig is what every session of this node shares.
func (n *Node) syncerConfig() syncer.Config {
	lim := n.cfg.Network.Limits.WithDefaults()
	return syncer.Config{
		Self:      n.DeviceID(),
		Replica:   engine.SyncReplica{Store: n.store, Rep: n.rep},
		Audit:     syncerAudit{n},
		Events:    syncerEvents{n},
		Policy:    syncerPolicy{n},
		Urgent:    &n.urgent,
		Scheduler: core.SchedulerOf(n.cfg.Clock),
		Log:       n.log,
		Rand:      n.random(),
		Limits: syncer.Limits{
			HelloTimeout: lim.HelloTimeout,
			FrameTimeout: lim.FrameTimeout,
			MaxFrame:     syncer.FrameLimit(n.cfg.Network.Limits.MaxFrameSize),
			SyncTimeout:  n.cfg.SyncTimeout,
		},
	}
}

// syncerAudit appends a session's entries to the node's audit log.
type syncerAudit struct{ n *Node }

func (a syncerAudit) Record(ctx context.Context, e audit.Entry) { a.n.record(ctx, e) }

// syncerEvents tells the host what a session found.
type syncerEvents struct{ n *Node }

func (e syncerEvents) RepairUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte) {
	e.n.reportUnsettled(peer, tries, ours, theirs)
}

// syncerPolicy says which collections sync, and how to each peer, from
// the policy planner.
type syncerPolicy struct{ n *Node }

func (p syncerPolicy) Syncs(coll string) bool { return p.n.cfg.policy(coll).Syncs() }

func (p syncerPolicy) Admit(peer core.DeviceID, coll string) bool {
	return p.n.cfg.planner().Admit(peer, coll)
}

func (p syncerPolicy) Priority(peer core.DeviceID, coll string) core.Priority {
	return p.n.cfg.planner().Priority(peer, coll)
}
