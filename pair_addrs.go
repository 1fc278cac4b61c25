package federation

import (
	"context"
	"errors"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/registry"
)

// inviteAddrs returns the addresses an invitation carries for a node
// listening on addr: every interface's address with the port when addr's
// host is unspecified (another device cannot dial "[::]:port"), else addr.
func inviteAddrs(addr string) []string {
	out, err := discovery.LocalAddrs(addr)
	if err != nil || len(out) == 0 {
		return []string{addr} // not host:port: an in-memory address
	}
	if len(out) > registry.MaxInviteAddrs {
		out = out[:registry.MaxInviteAddrs]
	}
	return out
}

// Addrs returns the addresses another device can dial to reach this
// node: when it listens on every interface (the default), each
// interface's address with the listening port; nil before Start.
func (n *Node) Addrs() []string {
	addr := n.Addr()
	if addr == "" {
		return nil
	}
	return inviteAddrs(addr)
}

// dialAny dials peer at each of addrs in turn and returns the first
// session and the address that worked.
func (n *Node) dialAny(ctx context.Context, addrs []string, peer core.DeviceID) (Session, string, error) {
	var errs []error
	for _, a := range addrs {
		sess, err := n.c.Peers.Dial(ctx, a, peer) // within peers.DialDeadline
		if err == nil {
			return sess, a, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}
