package federation

import (
	"context"
	"errors"
	"io"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/internal/wire"
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

// peerSession is one sync session: the protocol (embedded) and the
// session as internal/peers manages it (a peers.Member once joined).
type peerSession struct {
	*syncer.Session
	sess core.Session
	peer core.DeviceID
	link *peers.Link
}

// runSession speaks the sync protocol on the link's session until it ends
// or ctx is done, then closes the session.
func (n *Node) runSession(ctx context.Context, link *peers.Link) error {
	sess := link.Session()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !n.trust.Trusted(ctx, sess.Peer(), sess.PeerKey()) {
		// Admitted only because an invitation is open: the pairing
		// ceremony, and nothing else.
		err := n.pairing.Host(ctx, sess)
		if err != nil {
			n.log.Warn("pairing failed", "peer", sess.Peer().Short(), "err", err)
			n.record(ctx, audit.Refusal(sess.Peer(), "pairing-failed"))
		} else {
			n.record(ctx, audit.Pairing(sess.Peer(), "approved"))
		}
		_ = sess.Close(err)
		return err
	}
	n.trust.Touch(ctx, sess.Peer(), n.cfg.Clock.Now())
	n.record(ctx, audit.SessionOpened(sess.Peer(), "direct"))
	ps := &peerSession{sess: sess, peer: sess.Peer(), link: link}
	ps.Session = syncer.New(n.syncerConfig(), sess, syncerLinks{n: n, ps: ps})
	link.Join(ps)
	defer link.Leave()
	err := ps.Run(ctx)
	n.record(ctx, audit.SessionClosed(ps.peer, engine.CloseReason(err)))
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		n.log.Warn("sync session ended", "peer", ps.peer.Short(), "err", err)
	} else {
		n.log.Debug("sync session ended", "peer", ps.peer.Short())
	}
	return err
}

// SessionsChanged asks the session to send the Direct set again, since the
// set of connected devices changed (peers.Member; called with the
// manager's lock held, and Reroute does not block).
func (ps *peerSession) SessionsChanged() { ps.Reroute() }

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

// directSet returns the devices this node has a live session with: it
// receives their changes from them, and its other peers need not forward
// them. The peer the set is for is left out.
func (n *Node) directSet(peer core.DeviceID) core.VersionVector {
	vv := core.VersionVector{}
	for _, id := range n.peers.Connected(peer) {
		vv[id] = 1 // the counter is unused; a VV omits zeros
	}
	return vv
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

// syncerLinks is one session's view of the node's session table.
type syncerLinks struct {
	n  *Node
	ps *peerSession
}

func (l syncerLinks) Hello(vv core.VersionVector) wire.SyncHello { return l.n.hello(vv) }

func (l syncerLinks) OnHello(ctx context.Context, h wire.SyncHello) { l.n.onHello(ctx, l.ps, h) }

func (l syncerLinks) Direct() core.VersionVector { return l.n.directSet(l.ps.peer) }
