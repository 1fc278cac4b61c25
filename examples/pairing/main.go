// Command pairing shows how a host adds a device to the user's mesh, with
// the SDK's API only: the laptop (already the user's) opens an invitation
// with Node.Invite and shows its QR string; the phone scans it and calls
// Node.Join; both devices show the same short authentication string (SAS),
// the user compares them and approves on both; the phone is then a trusted
// device of the mesh and syncs.
//
//	go run ./examples/pairing
//
// Both devices run in this process, each with its own directory, talking
// QUIC on the loopback interface. In a real host the two halves run on two
// devices and the "user" callbacks are dialogs.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/devicemesh/federation"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pairing:", err)
		os.Exit(1)
	}
}

func open(ctx context.Context, dir, name, typ string) (*federation.Node, error) {
	n, err := federation.New(federation.Config{
		Dir:     dir,
		Device:  federation.DeviceConfig{Name: name, Type: typ},
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
	})
	if err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "federation-pairing-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	laptop, err := open(ctx, dir+"/laptop", "Anna's laptop", "laptop")
	if err != nil {
		return err
	}
	defer laptop.Close()
	phone, err := open(ctx, dir+"/phone", "Anna's phone", "phone")
	if err != nil {
		return err
	}
	defer phone.Close()
	if err := laptop.Profile("me").Set(ctx, "name", "Anna"); err != nil {
		return err
	}

	// The laptop's side: open an invitation. Approve runs once the phone
	// has proven the invitation's secret; it shows the SAS and asks the
	// user, who compares it with the phone's screen.
	shownOnPhone := make(chan string, 1)
	inv, err := laptop.Invite(ctx, federation.InviteOptions{
		TTL: 5 * time.Minute,
		Approve: func(ctx context.Context, r federation.PairRequest) (bool, error) {
			fmt.Printf("laptop: %q (%s) wants to join; SAS %s\n", r.Peer.Name, r.Peer.ID.Short(), r.SAS)
			select {
			case phoneSAS := <-shownOnPhone: // the user looks at both screens
				same := phoneSAS == r.SAS
				fmt.Printf("laptop: the user sees the same SAS on both screens: %v, approves\n", same)
				return same, nil
			case <-ctx.Done():
				return false, ctx.Err()
			}
		},
	})
	if err != nil {
		return err
	}
	fmt.Printf("laptop: invitation open until %s, code %s\n", inv.Expires.Format(time.Kitchen), inv.Code)
	fmt.Printf("laptop: QR string %.40s... (%d characters)\n", inv.QR, len(inv.QR))

	// The phone's side: scan the QR string and join. Show displays the
	// SAS as soon as it is known; Confirm asks the phone's user too.
	req, err := phone.Join(ctx, inv.QR, federation.JoinOptions{
		Show: func(r federation.PairRequest) {
			fmt.Printf("phone:  joining %q (%s); SAS %s\n", r.Peer.Name, r.Peer.ID.Short(), r.SAS)
			shownOnPhone <- r.SAS
		},
		Confirm: func(context.Context, federation.PairRequest) (bool, error) { return true, nil },
	})
	if err != nil {
		return err
	}
	fmt.Printf("phone:  joined the mesh of %s\n", req.Peer.ID.Short())

	// The phone syncs with its new peer: the user's profile arrives.
	for {
		var name string
		ok, err := phone.Profile("me").Get(ctx, "name", &name)
		if err != nil {
			return err
		}
		if ok {
			fmt.Printf("phone:  synced the profile: name = %s\n", name)
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the profile never arrived: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	devices, err := phone.Devices(ctx)
	if err != nil {
		return err
	}
	for _, d := range devices {
		fmt.Printf("phone:  device %s %-14q %-7s %s\n", d.ID.Short(), d.Name, d.Type, d.Trust)
	}
	return nil
}
