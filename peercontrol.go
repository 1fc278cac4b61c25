package federation

import (
	"context"
	"fmt"

	"github.com/devicemesh/federation/internal/peers"
)

// ErrPeerPaused is returned by Connect for a device paused with PausePeer,
// and closes its sessions.
var ErrPeerPaused = peers.ErrPaused

// PausePeer stops syncing with device id without revoking it: its
// sessions are closed at once, this node neither dials it nor accepts its
// sessions, and it stays trusted (its registry entry, its addresses and
// every other device's sessions with it are untouched). ResumePeer undoes
// it. A pause lasts until ResumePeer or until the node closes; it is not
// replicated to other devices (use RevokeDevice to cut a device off
// everywhere). It returns how many sessions it closed.
func (n *Node) PausePeer(ctx context.Context, id DeviceID) (int, error) {
	if err := n.checkPeer(ctx, id); err != nil {
		return 0, err
	}
	return n.c.Peers.Pause(id), nil
}

// ResumePeer ends PausePeer: the node dials id again at once when it knows
// an address, and accepts its sessions.
func (n *Node) ResumePeer(ctx context.Context, id DeviceID) error {
	if err := n.checkPeer(ctx, id); err != nil {
		return err
	}
	n.c.Peers.Resume(id)
	return nil
}

// DisconnectPeer closes every session with id now, without pausing it:
// the redial loop (or the peer) connects again after its backoff. It
// returns how many sessions it closed.
func (n *Node) DisconnectPeer(ctx context.Context, id DeviceID) (int, error) {
	if err := n.checkPeer(ctx, id); err != nil {
		return 0, err
	}
	return n.c.Peers.Disconnect(id), nil
}

// checkPeer refuses a zero id and this device's own.
func (n *Node) checkPeer(ctx context.Context, id DeviceID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if id.IsZero() || id == n.DeviceID() {
		return fmt.Errorf("%w: peer %s is not another device", ErrInvalidArgument, id.Short())
	}
	return nil
}
