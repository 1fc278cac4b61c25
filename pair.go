package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/pairing"
	"github.com/devicemesh/federation/registry"
)

// Pairing: a trusted device opens an invitation (Invite), shown to the user
// as a short code and a QR-ready string; the new device uses it (Join). Over
// a session authenticated by both device keys, the new device proves it
// holds the invitation's one-time secret, bound to this very session; both
// devices then show the same short authentication string (SAS), derived
// from the handshake, and the inviting device's host approves (and, if it
// wants, the joining one's confirms). Only then does the new device enter
// the registry and receive the list of the user's devices. A man in the
// middle holds two different sessions: it cannot bind the secret to either,
// and even knowing the secret it makes the two SAS differ. While an
// invitation is open, unknown devices may connect, but only to this
// ceremony: the node sends them nothing else and never syncs with them.

// ErrPairingUnsupported reports a transport whose sessions cannot carry the
// pairing ceremony (they expose no handshake hash).
var ErrPairingUnsupported = errors.New("transport cannot pair devices")

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

// invitations are the node's open invitations.
type invitations struct {
	tracker *registry.Tracker
	open    []openInvite
}

type openInvite struct {
	inv  registry.Invitation
	opts InviteOptions
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
	if err := n.reg.EnsureMesh(ctx); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	inv, err := registry.NewInvitation(n.ident, []string{addr}, n.cfg.Clock.Now().Add(opts.TTL), n.random())
	if err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	n.pairMu.Lock()
	defer n.pairMu.Unlock()
	if n.invites.tracker == nil {
		n.invites.tracker = registry.NewTracker(0)
	}
	n.pruneInvites()
	if err := n.invites.tracker.Add(inv); err != nil {
		return Invitation{}, fmt.Errorf("invite: %w", err)
	}
	n.invites.open = append(n.invites.open, openInvite{inv: inv, opts: opts})
	n.trust.Invites(n.invites.tracker, n.cfg.Clock.Now)
	return Invitation{Code: inv.Code(), QR: inv.String(), Expires: inv.Expires}, nil
}

// handover is what an inviting device gives the new one: the devices of
// the user it should trust.
type handover struct {
	Devices []handoverDevice `json:"devices"`
}

type handoverDevice struct {
	Key  core.PublicKey `json:"key"`
	Name string         `json:"name"`
}

// hostPairing runs the inviting side of the ceremony on a session from an
// untrusted device.
func (n *Node) hostPairing(ctx context.Context, sess Session) error {
	ps, ok := sess.(pairing.Session)
	if !ok {
		return ErrPairingUnsupported
	}
	n.pairMu.Lock()
	n.pruneInvites()
	if len(n.invites.open) == 0 {
		n.pairMu.Unlock()
		return fmt.Errorf("%w: device %s is not paired", core.ErrUnauthorized, sess.Peer().Short())
	}
	// The newest invitation, and every other one still open: the joiner
	// may hold any of them.
	oi := n.invites.open[len(n.invites.open)-1]
	others := make([]pairing.Offer, 0, len(n.invites.open)-1)
	for _, o := range n.invites.open[:len(n.invites.open)-1] {
		others = append(others, pairing.Offer{Invitation: o.inv, Approve: o.opts.Approve})
	}
	n.pairMu.Unlock()
	st, err := sess.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("pairing: %w", err)
	}
	ho, err := n.handover(ctx)
	if err != nil {
		return err
	}
	res, err := pairing.Host(ctx, ps, st, pairing.HostParams{
		Identity: n.ident, Name: n.cfg.Device.Name, Invitation: oi.inv, Tracker: n.invites.tracker,
		Approve: oi.opts.Approve, Others: others, Handover: pairing.Handover{Registry: ho}, Now: n.cfg.Clock.Now, Rand: n.random(),
	})
	if err != nil {
		return fmt.Errorf("pairing: %w", err)
	}
	n.closeInvite(res.Invitation)
	n.addDevice(ctx, res.Peer.Key, res.Peer.Name)
	if err := n.reg.Add(ctx, res.Peer.Key, res.Peer.Name); err != nil {
		return fmt.Errorf("pairing: record the new device: %w", err)
	}
	// The newcomer gets the mesh secret in a new generation sealed to it.
	if err := n.reg.RotateSecret(ctx); err != nil {
		return fmt.Errorf("pairing: rotate mesh secret: %w", err)
	}
	n.log.Info("device paired", "peer", res.Peer.ID.Short())
	return nil
}

func (n *Node) handover(ctx context.Context) ([]byte, error) {
	ds, err := n.trust.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	h := handover{Devices: []handoverDevice{{Key: n.PublicKey(), Name: n.cfg.Device.Name}}}
	for _, d := range ds {
		if d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner {
			h.Devices = append(h.Devices, handoverDevice{Key: d.PublicKey, Name: d.Name})
		}
	}
	return json.Marshal(h)
}

func (n *Node) closeInvite(inv registry.Invitation) {
	n.pairMu.Lock()
	defer n.pairMu.Unlock()
	for i, oi := range n.invites.open {
		if oi.inv.Code() == inv.Code() {
			n.invites.open = append(n.invites.open[:i], n.invites.open[i+1:]...)
			return
		}
	}
}

// pruneInvites drops the invitations the tracker no longer holds open
// (redeemed, expired or burned by wrong codes). pairMu is held.
func (n *Node) pruneInvites() {
	if n.invites.tracker == nil {
		return
	}
	open := n.invites.tracker.Open(n.cfg.Clock.Now())
	kept := n.invites.open[:0]
	for _, oi := range n.invites.open {
		if slices.Contains(open, oi.inv.Code()) {
			kept = append(kept, oi)
		}
	}
	clear(n.invites.open[len(kept):])
	n.invites.open = kept
}

func (n *Node) addDevice(ctx context.Context, key core.PublicKey, name string) {
	if name == "" {
		name = "device"
	}
	if key == n.PublicKey() {
		return
	}
	_ = n.trust.Admit(ctx, key, name)
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
	if len(inv.Addrs) == 0 {
		return PairRequest{}, fmt.Errorf("join: %w: invitation carries no address", core.ErrInvalidArgument)
	}
	if n.Addr() == "" {
		return PairRequest{}, fmt.Errorf("join: %w", ErrNotStarted)
	}
	defer n.trust.Joining(inv.Issuer, inv.IssuerKey)()
	sess, err := n.peers.Dial(ctx, inv.Addrs[0], inv.Issuer) // within peers.DialDeadline
	if err != nil {
		return PairRequest{}, fmt.Errorf("join: %w", err)
	}
	res, err := n.joinOn(ctx, sess, inv, opts)
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
	return PairRequest{Peer: res.Peer, SAS: res.SAS}, n.Connect(ctx, inv.Addrs[0], inv.Issuer)
}

func (n *Node) joinOn(ctx context.Context, sess Session, inv registry.Invitation, opts JoinOptions) (pairing.Result, error) {
	ps, ok := sess.(pairing.Session)
	if !ok {
		return pairing.Result{}, ErrPairingUnsupported
	}
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return pairing.Result{}, fmt.Errorf("join: %w", err)
	}
	res, err := pairing.Join(ctx, ps, st, pairing.JoinParams{
		Identity: n.ident, Name: n.cfg.Device.Name, Invitation: &inv, Show: opts.Show, Confirm: opts.Confirm, Rand: n.random(),
	})
	if err != nil {
		return res, fmt.Errorf("join: %w", err)
	}
	var h handover
	if err := json.Unmarshal(res.Handover.Registry, &h); err != nil {
		return res, fmt.Errorf("join: %w: handover: %v", core.ErrProtocol, err)
	}
	for _, d := range h.Devices {
		n.addDevice(ctx, d.Key, d.Name)
	}
	n.log.Info("joined", "inviter", inv.Issuer.Short(), "devices", len(h.Devices))
	return res, nil
}
