package federation

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// shiftClock is real time plus an offset the test moves forward.
type shiftClock struct{ off atomic.Int64 }

func (c *shiftClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *shiftClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// pairNode is a node on a libSQL file in a temporary directory, listening
// on real QUIC on loopback.
func pairNode(t *testing.T, name string, clock Clock) *Node {
	t.Helper()
	n, err := New(Config{
		Dir: t.TempDir(), Clock: clock,
		Device:  DeviceConfig{Name: name, Type: "laptop"},
		Network: NetworkConfig{ListenAddr: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// refusesUnknown checks that n's authorizer no longer admits a device it
// has never seen: the pairing window is closed.
func refusesUnknown(t *testing.T, n *Node, when string) {
	t.Helper()
	key := core.PublicKey{0x42, byte(time.Now().UnixNano())}
	if err := n.c.Trust.Authorize(context.Background(), core.DeviceIDFromKey(key), key); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("%s: an unknown key is admitted (Authorize: %v), want ErrUnauthorized", when, err)
	}
}

// joinRefusedBeforePairing checks that a Join from joiner to n failed at
// the handshake: n never ran its pairing ceremony with it (which leaves a
// "pairing-failed" refusal, or an approval, in n's audit log).
func joinRefusedBeforePairing(t *testing.T, n, joiner *Node, err error, when string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: join succeeded", when)
	}
	ctx := context.Background()
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		es, qerr := n.Audit().Query(ctx, audit.Filter{Device: joiner.DeviceID(), Kinds: []audit.Kind{audit.KindRefusal, audit.KindPairing}})
		if qerr != nil {
			t.Fatal(qerr)
		}
		for _, e := range es {
			if f, ok := e.Detail.Get("reason"); e.Kind == audit.KindPairing || ok && f.Text == "pairing-failed" {
				t.Fatalf("%s: the inviter ran a pairing ceremony with an unknown key (join: %v)", when, err)
			}
		}
	}
}

// wrongCodeQR is inv's QR with another well-formed code.
func wrongCodeQR(t *testing.T, inv Invitation) string {
	t.Helper()
	code := strings.ReplaceAll(inv.Code, "-", "")
	for _, first := range "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" {
		for _, check := range "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" {
			c := string(first) + code[1:registry.CodeLen-1] + string(check)
			if p, err := registry.ParseCode(c); err == nil && p != code {
				return strings.Replace(inv.QR, "c="+code, "c="+p, 1)
			}
		}
	}
	t.Fatal("no other code")
	return ""
}

func yes(context.Context, PairRequest) (bool, error) { return true, nil }

// TestPairingWindowClosesAfterDecline: once the user declined the only
// invitation, unknown keys are refused at the handshake again.
func TestPairingWindowClosesAfterDecline(t *testing.T) {
	ctx := context.Background()
	phone, stranger := pairNode(t, "phone", nil), pairNode(t, "stranger", nil)
	inv, err := phone.Invite(ctx, InviteOptions{Approve: func(context.Context, PairRequest) (bool, error) {
		return false, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The joiner sees the refusal, or the session closed as unauthorized.
	if _, err := stranger.Join(ctx, inv.QR, JoinOptions{}); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("declined join: %v, want ErrUnauthorized", err)
	}
	refusesUnknown(t, phone, "after a decline")
	other := pairNode(t, "other", nil)
	_, err = other.Join(ctx, inv.QR, JoinOptions{})
	joinRefusedBeforePairing(t, phone, other, err, "after a decline")
}

// TestPairingWindowClosesWhenBurned: five wrong codes burn the invitation,
// and with it the window.
func TestPairingWindowClosesWhenBurned(t *testing.T) {
	ctx := context.Background()
	phone, stranger := pairNode(t, "phone", nil), pairNode(t, "stranger", nil)
	inv, err := phone.Invite(ctx, InviteOptions{Approve: yes})
	if err != nil {
		t.Fatal(err)
	}
	bad := wrongCodeQR(t, inv)
	for i := 0; i < 5; i++ {
		if _, err := stranger.Join(ctx, bad, JoinOptions{}); err == nil {
			t.Fatalf("wrong code %d accepted", i)
		}
	}
	refusesUnknown(t, phone, "after 5 wrong codes")
	other := pairNode(t, "other", nil)
	_, err = other.Join(ctx, inv.QR, JoinOptions{})
	joinRefusedBeforePairing(t, phone, other, err, "after 5 wrong codes")
}

// TestPairingWindowClosesOnExpiry: an invitation past its expiry no longer
// admits unknown keys.
func TestPairingWindowClosesOnExpiry(t *testing.T) {
	ctx := context.Background()
	clock := &shiftClock{}
	phone, stranger := pairNode(t, "phone", clock), pairNode(t, "stranger", nil)
	inv, err := phone.Invite(ctx, InviteOptions{Approve: yes, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Minute)
	refusesUnknown(t, phone, "after expiry")
	_, err = stranger.Join(ctx, inv.QR, JoinOptions{})
	joinRefusedBeforePairing(t, phone, stranger, err, "after expiry")
}

// TestPairingOlderInvitationWorks: with two invitations open, the older
// one's code pairs too, and does not count as a wrong guess against the
// newer (four wrong codes later, the newer still works).
func TestPairingOlderInvitationWorks(t *testing.T) {
	ctx := context.Background()
	phone := pairNode(t, "phone", nil)
	older, err := phone.Invite(ctx, InviteOptions{Approve: yes})
	if err != nil {
		t.Fatal(err)
	}
	newer, err := phone.Invite(ctx, InviteOptions{Approve: yes})
	if err != nil {
		t.Fatal(err)
	}
	laptop := pairNode(t, "laptop", nil)
	if _, err := laptop.Join(ctx, older.QR, JoinOptions{}); err != nil {
		t.Fatalf("join with the older invitation: %v", err)
	}
	bad := wrongCodeQR(t, newer)
	for i := 0; i < 4; i++ {
		// A new device each time: every guess reaches the tracker.
		stranger := pairNode(t, "stranger", nil)
		if _, err := stranger.Join(ctx, bad, JoinOptions{}); !errors.Is(err, core.ErrUnauthorized) {
			t.Fatalf("wrong code %d: %v, want ErrUnauthorized", i, err)
		}
	}
	tablet := pairNode(t, "tablet", nil)
	if _, err := tablet.Join(ctx, newer.QR, JoinOptions{}); err != nil {
		t.Fatalf("join with the newer invitation after 4 wrong codes: %v", err)
	}
	// Both redeemed: the window is closed.
	refusesUnknown(t, phone, "after both invitations were used")
}
