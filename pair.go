package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/pairing"
	"github.com/devicemesh/federation/registry"
)

// Pairing (the ceremony, its open invitations and both of its sides) lives
// in internal/engine (Pairing); the host asks for it here.

// ErrPairingUnsupported reports a transport whose sessions cannot carry the
// pairing ceremony (they expose no handshake hash).
var ErrPairingUnsupported = engine.ErrPairingUnsupported

// PairRequest is what the user is asked to approve: the other device and
// the short authentication string both devices show.
type PairRequest = pairing.Request

// InviteOptions configures an invitation.
type InviteOptions struct {
	// TTL is how long the invitation works. 0 means 10 minutes.
	TTL time.Duration
	// Approve asks this device's user whether the device in the request may
	// join, after checking that it shows the same SAS. Required.
	Approve func(ctx context.Context, r PairRequest) (bool, error)
}

// Invitation is an open invitation to show to the user.
type Invitation struct {
	// Code is the short one-time code to type on the new device.
	Code string
	// QR is the string to encode as a QR code (or paste): it carries this
	// device's id, key and addresses, the secret and the expiry.
	QR string
	// Expires is when the invitation stops working.
	Expires time.Time
}

// Invite opens an invitation for a new device. Start must have been called:
// the invitation carries the address the new device dials.
func (n *Node) Invite(ctx context.Context, opts InviteOptions) (Invitation, error) {
	if opts.Approve == nil {
		return Invitation{}, fmt.Errorf("%w: Approve is required", core.ErrInvalidArgument)
	}
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Minute
	}
	addr := n.Addr()
	if addr == "" {
		return Invitation{}, fmt.Errorf("invite: %w", ErrNotStarted)
	}
	if err := n.c.Reg.EnsureMesh(ctx); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	inv, err := registry.NewInvitation(n.c.Ident, inviteAddrs(addr), n.cfg.Clock.Now().Add(opts.TTL), n.c.Random())
	if err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	if err := n.c.Pairing.Open(inv, opts.Approve); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	if err := n.announceCode(inv); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	return Invitation{Code: inv.Code(), QR: inv.String(), Expires: inv.Expires}, nil
}

// JoinOptions configures Join.
type JoinOptions struct {
	// Show, when set, is called with the SAS as soon as it is known, to
	// display it while the other device's user decides.
	Show func(PairRequest)
	// Confirm, when set, asks this device's user too.
	Confirm func(ctx context.Context, r PairRequest) (bool, error)
}

// Join pairs this device with the user's devices using an invitation's QR
// string, then connects to the inviting device and starts syncing. Start
// must have been called. A wrong, reused or expired invitation, a refusal,
// or SAS strings that differ (a man in the middle) make it fail.
func (n *Node) Join(ctx context.Context, qr string, opts JoinOptions) (PairRequest, error) {
	inv, err := registry.ParseInvitation(qr)
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	return n.join(ctx, inv, opts)
}

// join pairs with the issuer of inv (Join, JoinCode).
func (n *Node) join(ctx context.Context, inv registry.Invitation, opts JoinOptions) (PairRequest, error) {
	if len(inv.Addrs) == 0 {
		return PairRequest{}, fmt.Errorf("join: %w: invitation carries no address", core.ErrInvalidArgument)
	}
	if n.Addr() == "" {
		return PairRequest{}, fmt.Errorf("join: %w", ErrNotStarted)
	}
	defer n.c.Trust.Joining(inv.Issuer, inv.IssuerKey)()
	sess, addr, err := n.dialAny(ctx, inv.Addrs, inv.Issuer)
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	res, err := n.c.Pairing.JoinOn(ctx, sess, inv, opts.Show, opts.Confirm)
	if err == nil {
		// Let the inviter read our acknowledgement and record the new
		// device before the session goes: it closes the session itself.
		deadline, stop := core.Wait(core.SchedulerOf(n.cfg.Clock), peers.DialDeadline)
		select {
		case <-sess.Done():
		case <-deadline:
		case <-ctx.Done():
		}
		stop()
	}
	_ = sess.Close(err)
	if err != nil {
		return PairRequest{}, err
	}
	return PairRequest{Peer: res.Peer, SAS: res.SAS}, n.Connect(ctx, addr, inv.Issuer)
}
