package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
)

// Sessions runs the node's side of internal/peers: one syncer.Session per
// trusted session (peers.Handler), the pairing ceremony for the others,
// and the roster of trusted devices to keep sessions with (peers.Roster).
// Its fields are set once, before the node starts.
type Sessions struct {
	Trust   *devices.Trust
	Pairing *Pairing
	Manager *peers.Manager
	Syncer  syncer.Config // what every session of this node shares
	Record  func(ctx context.Context, e audit.Entry)
	Addr    func() string // the node's address, "" before Start
	Clock   core.Clock
	Log     *slog.Logger
	// PeerEvent, when set, hears of every sync session that starts (up)
	// and ends (with the reason).
	PeerEvent func(peer core.DeviceID, up bool, reason string)
	// Ended, when set, hears what the peer held when a session ended
	// (relay mail).
	Ended func(ctx context.Context, peer core.DeviceID, held core.VersionVector)
}

// PeerSession is one sync session: the protocol (embedded) and the
// session as internal/peers manages it (a peers.Member once joined).
type PeerSession struct {
	*syncer.Session
	Sess core.Session
	Link *peers.Link
}

// Serve speaks the sync protocol (or the pairing ceremony) on the link's
// session until it ends or ctx is done, then closes the session.
func (s *Sessions) Serve(ctx context.Context, link *peers.Link) error {
	sess := link.Session()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !s.Trust.Trusted(ctx, sess.Peer(), sess.PeerKey()) {
		// Admitted only because an invitation is open: the pairing
		// ceremony, and nothing else.
		err := s.Pairing.Host(ctx, sess)
		if err != nil {
			s.Log.Warn("pairing failed", "peer", sess.Peer().Short(), "err", err)
			s.Record(ctx, audit.Refusal(sess.Peer(), "pairing-failed"))
		} else {
			s.Record(ctx, audit.Pairing(sess.Peer(), "approved"))
		}
		_ = sess.Close(err)
		return err
	}
	s.Trust.Touch(ctx, sess.Peer(), s.Clock.Now())
	s.Record(ctx, audit.SessionOpened(sess.Peer(), "direct"))
	ps := &PeerSession{Sess: sess, Link: link}
	ps.Session = syncer.New(s.Syncer, sess, syncerLinks{s: s, ps: ps})
	link.Join(ps)
	defer link.Leave()
	s.peerEvent(ps.Peer(), true, "")
	err := ps.Run(ctx)
	if s.Ended != nil {
		st := ps.Status()
		held := st.Acked.Clone()
		held.Merge(st.CaughtUp)
		s.Ended(context.WithoutCancel(ctx), ps.Peer(), held)
	}
	s.Record(ctx, audit.SessionClosed(ps.Peer(), CloseReason(err)))
	s.peerEvent(ps.Peer(), false, CloseReason(err))
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		s.Log.Warn("sync session ended", "peer", ps.Peer().Short(), "err", err)
	} else {
		s.Log.Debug("sync session ended", "peer", ps.Peer().Short())
	}
	return err
}

// SessionsChanged asks the session to send the Direct set again, since the
// set of connected devices changed (peers.Member; called with the
// manager's lock held, and Reroute does not block).
func (ps *PeerSession) SessionsChanged() { ps.Reroute() }

// Peers returns the trusted devices of the registry table (peers.Roster).
func (s *Sessions) Peers(ctx context.Context) ([]core.DeviceID, error) {
	devs, err := s.Trust.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]core.DeviceID, 0, len(devs))
	for _, d := range devs {
		if d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner {
			out = append(out, d.ID)
		}
	}
	return out, nil
}

// directSet returns the devices this node has a live session with: it
// receives their changes from them, and its other peers need not forward
// them. The peer the set is for is left out.
func (s *Sessions) directSet(peer core.DeviceID) core.VersionVector {
	vv := core.VersionVector{}
	for _, id := range s.Manager.Connected(peer) {
		vv[id] = 1 // the counter is unused; a VV omits zeros
	}
	return vv
}

// hello is this node's SyncHello for a session.
func (s *Sessions) hello(vv core.VersionVector) wire.SyncHello {
	h := wire.SyncHello{VV: vv, Instance: s.Manager.Instance()}
	if a := s.Addr(); a != "" {
		h.Addrs = []string{a}
	}
	return h
}

// onHello hands the announcement in the peer's SyncHello to the connection
// manager: it records the peer's addresses and closes the sessions with the
// peer that this one replaces.
func (s *Sessions) onHello(ctx context.Context, ps *PeerSession, h wire.SyncHello) {
	ps.Link.Greet(ctx, h.Instance, peers.Dialable(h.Addrs, ps.Sess))
}

// syncerLinks is one session's view of the node's session table.
type syncerLinks struct {
	s  *Sessions
	ps *PeerSession
}

func (l syncerLinks) Hello(vv core.VersionVector) wire.SyncHello { return l.s.hello(vv) }

func (l syncerLinks) OnHello(ctx context.Context, h wire.SyncHello) { l.s.onHello(ctx, l.ps, h) }

func (l syncerLinks) Direct() core.VersionVector { return l.s.directSet(l.ps.Peer()) }

// peerEvent reports a session that started or ended (PeerEvent).
func (s *Sessions) peerEvent(peer core.DeviceID, up bool, reason string) {
	if s.PeerEvent != nil {
		s.PeerEvent(peer, up, reason)
	}
}
