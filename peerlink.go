package federation

import (
	"context"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
)

// The node's side of internal/peers: thin adapters that let the connection
// manager run today's session code (runSession) and read the registry.

// newPeers builds the node's connection manager.
func (n *Node) newPeers() *peers.Manager {
	return peers.New(peers.Config{
		Self:    n.DeviceID(),
		Handler: peerHandler{n},
		Roster:  peerRoster{n},
		Book:    n.store,
		Clock:   n.cfg.Clock,
		Rand:    n.cfg.Rand,
		Logger:  n.log,
	})
}

// peerHandler runs the sync protocol on each session (peers.Handler).
type peerHandler struct{ n *Node }

// Serve runs the sync protocol (or the pairing ceremony) on l.
func (h peerHandler) Serve(ctx context.Context, l *peers.Link) error {
	return h.n.runSession(ctx, l)
}

// peerRoster lists the trusted devices to keep sessions with
// (peers.Roster).
type peerRoster struct{ n *Node }

// Peers returns the trusted devices of the registry table.
func (r peerRoster) Peers(ctx context.Context) ([]core.DeviceID, error) {
	devs, err := r.n.trust.List(ctx)
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

// hello is this node's SyncHello for a session.
func (n *Node) hello(vv core.VersionVector) wire.SyncHello {
	h := wire.SyncHello{VV: vv, Instance: n.peers.Instance()}
	if a := n.Addr(); a != "" {
		h.Addrs = []string{a}
	}
	return h
}

// onHello hands the announcement in the peer's SyncHello to the connection
// manager: it records the peer's addresses and closes the sessions with the
// peer that this one replaces.
func (n *Node) onHello(ctx context.Context, ps *peerSession, h wire.SyncHello) {
	ps.link.Greet(ctx, h.Instance, peers.Dialable(h.Addrs, ps.sess))
}
