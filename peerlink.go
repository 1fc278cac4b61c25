package federation

import (
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/peers"
)

// The node's side of internal/peers is engine.Sessions: it runs the sync
// protocol (or the pairing ceremony) on each session and reads the
// registry for the roster.

// newPeers builds the node's connection manager; n.sessions serves its
// sessions and lists its roster once newNode has filled it in.
func (n *Node) newPeers() *peers.Manager {
	n.sessions = &engine.Sessions{}
	return peers.New(peers.Config{
		Self:    n.DeviceID(),
		Handler: n.sessions,
		Roster:  n.sessions,
		Book:    n.store,
		Clock:   n.cfg.Clock,
		Rand:    n.cfg.Rand,
		Logger:  n.log,
	})
}
