package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/devices"
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

// Approve asks the inviting device's user whether the device in the
// request may join (federation.InviteOptions.Approve).
type Approve = func(ctx context.Context, r pairing.Request) (bool, error)

// Pairing is a node's side of the pairing ceremony: its open invitations,
// the inviting side (Host) and the joining side (JoinOn).
type Pairing struct {
	Ident *identity.Identity
	Name  string              // this device's name (Config.Device.Name)
	Type  registry.DeviceType // this device's kind (Config.Device.Type)
	Clock core.Clock
	Rand  io.Reader
	Trust *devices.Trust
	Reg   *devices.Registry
	Log   *slog.Logger

	mu      sync.Mutex
	invites invitations // open pairing invitations
}

// invitations are the node's open invitations.
type invitations struct {
	tracker *registry.Tracker
	open    []openInvite
}

type openInvite struct {
	inv     registry.Invitation
	approve Approve
}

// Open records a new invitation, answered by approve.
func (p *Pairing) Open(inv registry.Invitation, approve Approve) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.invites.tracker == nil {
		p.invites.tracker = registry.NewTracker(0)
	}
	p.pruneInvites()
	if err := p.invites.tracker.Add(inv); err != nil {
		return err
	}
	p.invites.open = append(p.invites.open, openInvite{inv: inv, approve: approve})
	p.Trust.Invites(p.invites.tracker, p.Clock.Now)
	return nil
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

// Host runs the inviting side of the ceremony on a session from an
// untrusted device.
func (p *Pairing) Host(ctx context.Context, sess core.Session) error {
	ps, ok := sess.(pairing.Session)
	if !ok {
		return ErrPairingUnsupported
	}
	p.mu.Lock()
	p.pruneInvites()
	if len(p.invites.open) == 0 {
		p.mu.Unlock()
		return fmt.Errorf("%w: device %s is not paired", core.ErrUnauthorized, sess.Peer().Short())
	}
	// The newest invitation, and every other one still open: the joiner
	// may hold any of them.
	oi := p.invites.open[len(p.invites.open)-1]
	others := make([]pairing.Offer, 0, len(p.invites.open)-1)
	for _, o := range p.invites.open[:len(p.invites.open)-1] {
		others = append(others, pairing.Offer{Invitation: o.inv, Approve: o.approve})
	}
	p.mu.Unlock()
	st, err := sess.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("pairing: %w", err)
	}
	ho, err := p.handover(ctx)
	if err != nil {
		return err
	}
	res, err := pairing.Host(ctx, ps, st, pairing.HostParams{
		Identity: p.Ident, Name: p.Name, Type: p.Type, Invitation: oi.inv, Tracker: p.invites.tracker,
		Approve: oi.approve, Others: others, Handover: pairing.Handover{Registry: ho}, Now: p.Clock.Now, Rand: p.Rand,
	})
	if err != nil {
		return fmt.Errorf("pairing: %w", err)
	}
	p.closeInvite(res.Invitation)
	p.addDevice(ctx, res.Peer.Key, res.Peer.Name)
	if err := p.Reg.Add(ctx, res.Peer.Key, res.Peer.Name, res.Peer.Type); err != nil {
		return fmt.Errorf("pairing: record the new device: %w", err)
	}
	// The newcomer gets the mesh secret in a new generation sealed to it.
	if err := p.Reg.RotateSecret(ctx); err != nil {
		return fmt.Errorf("pairing: rotate mesh secret: %w", err)
	}
	p.Log.Info("device paired", "peer", res.Peer.ID.Short())
	return nil
}

func (p *Pairing) handover(ctx context.Context) ([]byte, error) {
	ds, err := p.Trust.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	h := handover{Devices: []handoverDevice{{Key: p.Ident.PublicKey(), Name: p.Name}}}
	for _, d := range ds {
		if d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner {
			h.Devices = append(h.Devices, handoverDevice{Key: d.PublicKey, Name: d.Name})
		}
	}
	return json.Marshal(h)
}

func (p *Pairing) closeInvite(inv registry.Invitation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, oi := range p.invites.open {
		if oi.inv.Code() == inv.Code() {
			p.invites.open = append(p.invites.open[:i], p.invites.open[i+1:]...)
			return
		}
	}
}

// pruneInvites drops the invitations the tracker no longer holds open
// (redeemed, expired or burned by wrong codes). mu is held.
func (p *Pairing) pruneInvites() {
	if p.invites.tracker == nil {
		return
	}
	open := p.invites.tracker.Open(p.Clock.Now())
	kept := p.invites.open[:0]
	for _, oi := range p.invites.open {
		if slices.Contains(open, oi.inv.Code()) {
			kept = append(kept, oi)
		}
	}
	clear(p.invites.open[len(kept):])
	p.invites.open = kept
}

func (p *Pairing) addDevice(ctx context.Context, key core.PublicKey, name string) {
	if name == "" {
		name = "device"
	}
	if key == p.Ident.PublicKey() {
		return
	}
	_ = p.Trust.Admit(ctx, key, name)
}

// JoinOn runs the joining side of the ceremony on sess, dialled to the
// invitation's issuer, and admits the devices the issuer hands over.
func (p *Pairing) JoinOn(ctx context.Context, sess core.Session, inv registry.Invitation, show func(pairing.Request), confirm func(ctx context.Context, r pairing.Request) (bool, error)) (pairing.Result, error) {
	ps, ok := sess.(pairing.Session)
	if !ok {
		return pairing.Result{}, ErrPairingUnsupported
	}
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return pairing.Result{}, fmt.Errorf("join: %w", err)
	}
	res, err := pairing.Join(ctx, ps, st, pairing.JoinParams{
		Identity: p.Ident, Name: p.Name, Type: p.Type, Invitation: &inv, Show: show, Confirm: confirm, Rand: p.Rand,
	})
	if err != nil {
		return res, fmt.Errorf("join: %w", err)
	}
	var h handover
	if err := json.Unmarshal(res.Handover.Registry, &h); err != nil {
		return res, fmt.Errorf("join: %w: handover: %v", core.ErrProtocol, err)
	}
	for _, d := range h.Devices {
		p.addDevice(ctx, d.Key, d.Name)
	}
	p.Log.Info("joined", "inviter", inv.Issuer.Short(), "devices", len(h.Devices))
	return res, nil
}
