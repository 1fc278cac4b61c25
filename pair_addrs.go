package federation

import (
	"context"
	"errors"
	"time"

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

// dialStagger is the head start each invitation address gets over the
// next one in dialAny.
const dialStagger = 250 * time.Millisecond

// dialAny dials peer at addrs, each dialStagger after the one before
// without waiting for it to fail (an address that drops packets would
// otherwise hold the others up for a handshake timeout), and returns the
// first session and the address that worked; the others are cancelled or
// closed.
func (n *Node) dialAny(ctx context.Context, addrs []string, peer core.DeviceID) (Session, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		sess Session
		addr string
		err  error
	}
	results := make(chan result, len(addrs))
	sched := core.SchedulerOf(n.cfg.Clock)
	for i, a := range addrs {
		go func() {
			if i > 0 {
				tick, stop := core.Wait(sched, time.Duration(i)*dialStagger)
				defer stop()
				select {
				case <-tick:
				case <-ctx.Done():
					results <- result{addr: a, err: ctx.Err()}
					return
				}
			}
			sess, err := n.c.Peers.Dial(ctx, a, peer) // within peers.DialDeadline
			results <- result{sess: sess, addr: a, err: err}
		}()
	}
	var won *result
	var errs []error
	for range addrs {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case won == nil:
			won = &r
			cancel() // the others stop
		default:
			_ = r.sess.Close(errors.New("another address answered first"))
		}
	}
	if won == nil {
		return nil, "", errors.Join(errs...)
	}
	return won.sess, won.addr, nil
}
