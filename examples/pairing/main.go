// Command pairing runs the pairing ceremony between two in-process devices
// over transport.Mem: the laptop (already in the mesh) shows an
// invitation, the phone scans it, both print the short authentication
// string, the "users" compare them and approve, and the phone receives the
// handover.
//
//	go run ./examples/pairing
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/pairing"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

// pairingWindow admits any device that proves its key. A node uses such an
// authorizer only while an invitation is open, and gives those devices the
// pairing stream and nothing else.
type pairingWindow struct{}

func (pairingWindow) Authorize(context.Context, core.DeviceID, core.PublicKey) error { return nil }

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pairing:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	laptop, err := identity.Generate(nil)
	if err != nil {
		return err
	}
	phone, err := identity.Generate(nil)
	if err != nil {
		return err
	}
	net := transport.NewMemNetwork()
	laptopTr, err := net.Listen(laptop, pairingWindow{})
	if err != nil {
		return err
	}
	defer laptopTr.Close()

	// The laptop opens an invitation and shows it.
	inv, err := registry.NewInvitation(laptop, []string{laptopTr.Addr()}, time.Now().Add(5*time.Minute), nil)
	if err != nil {
		return err
	}
	tracker := registry.NewTracker(0)
	if err := tracker.Add(inv); err != nil {
		return err
	}
	fmt.Println("laptop: pairing code", inv.Code())
	fmt.Println("laptop: QR string   ", inv.String())

	// The phone scans the QR string: it now knows the laptop's key, so its
	// transport accepts only the laptop.
	scanned, err := registry.ParseInvitation(inv.String())
	if err != nil {
		return err
	}
	phoneTr, err := net.Listen(phone, transport.NewAllowList(scanned.IssuerKey))
	if err != nil {
		return err
	}
	defer phoneTr.Close()

	// The two users look at both screens.
	laptopSAS, phoneSAS := make(chan string, 1), make(chan string, 1)
	compare := func(ctx context.Context, mine string, mineCh, theirs chan string) (bool, error) {
		mineCh <- mine
		select {
		case other := <-theirs:
			theirs <- other
			return other == mine, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}

	hostDone := make(chan error, 1)
	go func() {
		hostDone <- host(ctx, laptop, laptopTr, inv, tracker, func(ctx context.Context, r pairing.Request) (bool, error) {
			fmt.Printf("laptop: %q (%s, %s) wants to join; code on screen: %s\n", r.Peer.Name, r.Peer.Type, r.Peer.ID.Short(), r.SAS)
			ok, err := compare(ctx, r.SAS, laptopSAS, phoneSAS)
			fmt.Println("laptop: user approves:", ok)
			return ok, err
		})
	}()

	s, err := phoneTr.Dial(ctx, scanned.Addrs[0], scanned.Issuer)
	if err != nil {
		return err
	}
	defer s.Close(nil)
	st, err := s.OpenStream(ctx)
	if err != nil {
		return err
	}
	res, err := pairing.Join(ctx, s.(*transport.Session), st, pairing.JoinParams{
		Identity: phone, Name: "Anna's phone", Type: registry.TypePhone, Invitation: &scanned,
		Show: func(r pairing.Request) { fmt.Printf("phone:  joining %q; code on screen: %s\n", r.Peer.Name, r.SAS) },
		Confirm: func(ctx context.Context, r pairing.Request) (bool, error) {
			ok, err := compare(ctx, r.SAS, phoneSAS, laptopSAS)
			fmt.Println("phone:  user confirms:", ok)
			return ok, err
		},
	})
	if err != nil {
		return fmt.Errorf("phone: %w", err)
	}
	if err := <-hostDone; err != nil {
		return fmt.Errorf("laptop: %w", err)
	}
	fmt.Printf("phone:  joined through %s; received %d bytes of registry and %d bytes of sealed secret\n",
		res.Peer.ID.Short(), len(res.Handover.Registry), len(res.Handover.Secret))
	_, err = tracker.Redeem(inv.Code(), time.Now())
	fmt.Println("laptop: the same code again:", err)
	return nil
}

// host accepts the phone's session and runs the inviting side on its
// first stream.
func host(ctx context.Context, self *identity.Identity, tr *transport.Mem, inv registry.Invitation, tracker *registry.Tracker, approve func(context.Context, pairing.Request) (bool, error)) error {
	s, err := tr.Accept(ctx)
	if err != nil {
		return err
	}
	defer s.Close(nil)
	st, err := s.AcceptStream(ctx)
	if err != nil {
		return err
	}
	res, err := pairing.Host(ctx, s.(*transport.Session), st, pairing.HostParams{
		Identity: self, Name: "Anna's laptop", Type: registry.TypeLaptop,
		Invitation: inv, Tracker: tracker, Approve: approve,
		// A node sends the signed add operation and the mesh secret sealed
		// to the new device here.
		Handover: pairing.Handover{Registry: []byte("signed registry operations"), Secret: []byte("sealed mesh secret")},
		Now:      time.Now,
	})
	if err != nil {
		return err
	}
	fmt.Printf("laptop: paired with %q (%s), SAS %s\n", res.Peer.Name, res.Peer.ID.Short(), res.SAS)
	return nil
}
