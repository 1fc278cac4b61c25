package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/discovery/mdns"
	"github.com/devicemesh/federation/registry"
)

// Pairing by code on the local network. While an invitation is open, the
// inviting device (when LAN discovery is on) also answers mDNS under names
// derived from the invitation's code alone (discovery.CodeSecret, purpose
// prefix "pair/", rotating every codePeriod), with a sealed announcement
// of its key and addresses. The new device, given only the code, looks for
// those names, opens the announcement (which proves it was made by the
// holder of the key inside), and runs the usual pairing ceremony with that
// key pinned: the code (as the ceremony's pre-shared key, checked by the
// inviter's Tracker) and the SAS both devices show are what authenticate.

const (
	// codePurpose prefixes the purposes of the pairing announcement.
	codePurpose = "pair/"
	// codePeriod is the rotation period of the pairing announcement.
	codePeriod = 5 * time.Minute
	// codeFindTime bounds JoinCode's search when ctx has no deadline.
	codeFindTime = 2 * time.Minute
)

// codeMDNS builds the mDNS mechanism of the pairing announcement on m.
func (n *Node) codeMDNS(m discovery.Mesh) (*mdns.MDNS, error) {
	return mdns.New(mdns.Config{Mesh: m, Clock: n.cfg.Clock, Period: codePeriod, Interval: n.cfg.Discovery.Interval,
		Purpose: codePurpose, AnyKey: true, Rand: n.cfg.Rand, Logger: n.cfg.Logger})
}

// announceCode announces inv on the local network by its code until it
// expires (when LAN discovery is on).
func (n *Node) announceCode(inv registry.Invitation) error {
	if !n.cfg.lanOn() {
		return nil
	}
	code, err := registry.ParseCode(inv.Code())
	if err != nil {
		return err
	}
	d, err := n.codeMDNS(n.c.CodeMesh(code))
	if err != nil {
		return err
	}
	n.c.AnnounceCode(d, inv.Expires)
	return nil
}

// JoinCode pairs this device with the user's devices using only the short
// code of an invitation (Invitation.Code) typed by the user: it finds the
// inviting device on the local network by the code-derived announcement,
// then pairs as Join does. Start must have been called. It fails with an
// error wrapping ErrNotFound when no inviting device answers within ctx
// (two minutes when ctx has no deadline), and as Join does otherwise.
func (n *Node) JoinCode(ctx context.Context, code string, opts JoinOptions) (PairRequest, error) {
	canon, err := registry.ParseCode(code)
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	if n.Addr() == "" {
		return PairRequest{}, fmt.Errorf("join: %w", ErrNotStarted)
	}
	d, err := n.codeMDNS(n.c.CodeMesh(canon))
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	findCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, ok := ctx.Deadline(); !ok {
		deadline, stop := core.Wait(core.SchedulerOf(n.cfg.Clock), codeFindTime)
		defer stop()
		go func() {
			select {
			case <-deadline:
				cancel()
			case <-findCtx.Done():
			}
		}()
	}
	a, err := d.Find(findCtx)
	if err != nil {
		if ctx.Err() != nil {
			return PairRequest{}, fmt.Errorf("join: %w", ctx.Err())
		}
		return PairRequest{}, fmt.Errorf("join: %w: no device announces this code on the local network (%v)", ErrNotFound, err)
	}
	addrs := a.Addrs
	if len(addrs) > registry.MaxInviteAddrs {
		addrs = addrs[:registry.MaxInviteAddrs]
	}
	inv, err := registry.InvitationFromCode(canon, a.Key, addrs, n.cfg.Clock.Now().Add(codePeriod))
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	return n.join(ctx, inv, opts)
}
