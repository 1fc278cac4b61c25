package federation

import (
	"context"
	"errors"
	"io"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
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
		err := n.hostPairing(ctx, sess)
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
	n.record(ctx, audit.SessionClosed(ps.peer, closeReason(err)))
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
		Replica:   syncerReplica{n},
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

// syncerReplica is the node's data as a session sees it
// (syncer.Replica).
type syncerReplica struct{ n *Node }

func (r syncerReplica) VersionVector(ctx context.Context) (core.VersionVector, error) {
	return r.n.store.VersionVector(ctx)
}

func (r syncerReplica) Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	return r.n.store.Changes(ctx, origin, after, limit, fn)
}

func (r syncerReplica) Changed() <-chan struct{} { return r.n.rep.Changed() }

func (r syncerReplica) OriginDevice(origin core.DeviceID) core.DeviceID {
	return r.n.OriginDevice(origin)
}

func (r syncerReplica) ApplyRemote(ctx context.Context, txns [][]core.Change) (syncer.Applied, error) {
	rt := make([]remoteTxn, len(txns))
	for i, t := range txns {
		rt[i] = t
	}
	res, err := r.n.applyRemote(ctx, rt)
	return syncer.Applied{Txns: res.txns, Changes: res.changes, Conflicts: res.conflicts}, err
}

func (r syncerReplica) ApplyRecords(ctx context.Context, recs []core.Change) error {
	return r.n.rep.ApplyRecords(ctx, recs)
}

func (r syncerReplica) Advance(ctx context.Context, vv core.VersionVector) error {
	return r.n.rep.Advance(ctx, vv)
}

func (r syncerReplica) Roots() map[string][32]byte {
	roots := map[string][32]byte{}
	for c, d := range r.n.Roots() {
		roots[c] = d
	}
	return roots
}

func (r syncerReplica) Snapshot(ctx context.Context) (core.VersionVector, map[string][32]byte, error) {
	return r.n.snapshot(ctx)
}

// RepairBase reads the version vector under the write lock: commits update
// the Merkle trees after the store, under that lock, so the trees then
// reflect at least everything in it. (Read without it, it could name a
// change whose record the trees do not show yet; the peer would then raise
// its version vector past a record it never received.)
func (r syncerReplica) RepairBase(ctx context.Context) (core.VersionVector, error) {
	return r.n.rep.VersionVector(ctx)
}

func (r syncerReplica) Reconciler(coll string, cfg merkle.Config) syncer.Reconciler {
	return &treeReconciler{rep: r.n.rep, coll: coll, cfg: cfg}
}

func (r syncerReplica) AnswerMerkle(coll string, req *merkle.Request) ([]byte, error) {
	var b []byte
	var err error
	r.n.withTree(coll, func(t *merkle.Tree) {
		var resp *merkle.Response
		if resp, err = t.Respond(req); err == nil {
			b, err = resp.AppendBinary(nil, req)
		}
	})
	return b, err
}

func (r syncerReplica) Get(ctx context.Context, coll, key string) (core.Record, error) {
	return r.n.store.Get(ctx, coll, key)
}

// treeReconciler runs a merkle.Reconciler over a collection's tree,
// under the trees' lock: the replica holds the tree across rounds
// (HoldTree), and later commits fold into it.
type treeReconciler struct {
	rep  *replica.Replica
	coll string
	cfg  merkle.Config
	rec  *merkle.Reconciler
}

func (t *treeReconciler) Start() *merkle.Request {
	var req *merkle.Request
	t.rep.HoldTree(t.coll, func(tree *merkle.Tree) {
		t.rec = merkle.NewReconciler(tree, t.cfg)
		req = t.rec.Start()
	})
	return req
}

func (t *treeReconciler) Next(resp *merkle.Response) (*merkle.Request, error) {
	var req *merkle.Request
	var err error
	t.rep.WithTrees(func() { req, err = t.rec.Next(resp) })
	return req, err
}

func (t *treeReconciler) Diff() merkle.Diff { return t.rec.Diff() }

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

// urgentHook notes the changes of every local or remote commit to a
// collection of top priority (syncer.OvertakeFloor, before per-device
// overrides) in the node's syncer.UrgentIndex: the senders look there for
// changes that may overtake a backlog.
type urgentHook struct{ n *Node }

func (h urgentHook) Committed(c replica.Commit) func() {
	if c.Source != replica.SourceLocal && c.Source != replica.SourceRemote {
		return nil // repair records and advances are not in the log as such
	}
	var dots []syncer.Dot
	for _, r := range c.Records {
		if p := h.n.cfg.policy(r.Collection); r.Seq != 0 && p.Syncs() && p.Priority >= syncer.OvertakeFloor {
			dots = append(dots, syncer.Dot{Origin: r.Origin, Seq: r.Seq})
		}
	}
	if len(dots) > 0 {
		h.n.urgent.Note(dots...)
	}
	return nil
}

// syncerLinks is one session's view of the node's session table.
type syncerLinks struct {
	n  *Node
	ps *peerSession
}

func (l syncerLinks) Hello(vv core.VersionVector) wire.SyncHello { return l.n.hello(vv) }

func (l syncerLinks) OnHello(ctx context.Context, h wire.SyncHello) { l.n.onHello(ctx, l.ps, h) }

func (l syncerLinks) Direct() core.VersionVector { return l.n.directSet(l.ps.peer) }
