package pairing

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

var sasForm = regexp.MustCompile(`^[0-9]{3} [0-9]{3}$`)

func TestPairingWithApproval(t *testing.T) {
	for _, how := range []string{"qr", "typed code", "qr over quic"} {
		t.Run(how, func(t *testing.T) {
			net := transport.NewMemNetwork()
			inviter, newcomer := newDevice(t, net), newDevice(t, net)
			if strings.HasSuffix(how, "quic") {
				inviter, newcomer = newQUICDevice(t), newQUICDevice(t)
			}
			f := newInvite(t, inviter)
			jp := JoinParams{Identity: newcomer.id, Name: "Anna's phone", Type: registry.TypePhone}
			if strings.HasPrefix(how, "qr") {
				inv, err := registry.ParseInvitation(f.inv.String())
				if err != nil {
					t.Fatal(err)
				}
				jp.Invitation = &inv
			} else {
				jp.Code = strings.ToLower(strings.ReplaceAll(f.inv.Code(), "-", " "))
			}
			u := newUsers()
			jp.Show, jp.Confirm = u.show, u.confirm
			var asked Request
			hp := f.hostParams(func(ctx context.Context, r Request) (bool, error) {
				asked = r
				return u.approve(ctx, r)
			})
			host, join := pair(t, connect(t, newcomer, inviter), hp, jp)
			if host.err != nil || join.err != nil {
				t.Fatalf("host: %v; join: %v", host.err, join.err)
			}
			if join.res.Handover.Registry == nil || !bytes.Equal(join.res.Handover.Registry, hp.Handover.Registry) ||
				!bytes.Equal(join.res.Handover.Secret, hp.Handover.Secret) {
				t.Fatalf("joiner received %+v, want %+v", join.res.Handover, hp.Handover)
			}
			if host.res.SAS != join.res.SAS || !sasForm.MatchString(join.res.SAS) || asked.SAS != join.res.SAS {
				t.Fatalf("SAS: host %q, joiner %q, shown for approval %q", host.res.SAS, join.res.SAS, asked.SAS)
			}
			wantJoiner := Device{ID: newcomer.id.DeviceID(), Key: newcomer.id.PublicKey(), Name: "Anna's phone", Type: registry.TypePhone}
			if asked.Peer != wantJoiner || host.res.Peer != wantJoiner {
				t.Fatalf("inviter saw %+v, want %+v", asked.Peer, wantJoiner)
			}
			wantInviter := Device{ID: inviter.id.DeviceID(), Key: inviter.id.PublicKey(), Name: "Anna's laptop", Type: registry.TypeLaptop}
			if join.res.Peer != wantInviter {
				t.Fatalf("joiner saw %+v, want %+v", join.res.Peer, wantInviter)
			}
			// The code is spent.
			if _, err := f.tracker.Redeem(f.inv.Code(), f.now); !errors.Is(err, registry.ErrCodeUsed) {
				t.Fatalf("redeem after pairing: %v, want ErrCodeUsed", err)
			}
		})
	}
}

// TestSASDiffersPerSession: the same devices and code on two sessions give
// independent strings (and SAS is deterministic in its inputs).
func TestSASDiffersPerSession(t *testing.T) {
	net := transport.NewMemNetwork()
	a, b := newDevice(t, net), newDevice(t, net)
	l1, l2 := connect(t, b, a), connect(t, b, a)
	var n1, n2 [nonceSize]byte
	s1 := sas(binding{hash: l1.dialSess.HandshakeHash(), joiner: b.id.DeviceID(), inviter: a.id.DeviceID()}, n1, n2)
	s1again := sas(binding{hash: l1.acceptSess.HandshakeHash(), joiner: b.id.DeviceID(), inviter: a.id.DeviceID()}, n1, n2)
	s2 := sas(binding{hash: l2.dialSess.HandshakeHash(), joiner: b.id.DeviceID(), inviter: a.id.DeviceID()}, n1, n2)
	if s1 != s1again {
		t.Fatalf("two ends of one session compute %q and %q", s1, s1again)
	}
	if s1 == s2 {
		t.Fatalf("two sessions share SAS %q (probability 1e-6: rerun; twice is a bug)", s1)
	}
}

func TestApproveFalseRefusesBoth(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	confirmed := make(chan struct{})
	jp := JoinParams{Identity: newcomer.id, Name: "phone", Code: f.inv.Code(),
		Confirm: func(context.Context, Request) (bool, error) { close(confirmed); return true, nil }}
	hp := f.hostParams(func(ctx context.Context, r Request) (bool, error) {
		<-confirmed // the joiner's user said yes; ours says no
		return false, nil
	})
	host, join := pair(t, connect(t, newcomer, inviter), hp, jp)
	if !errors.Is(host.err, ErrDeclined) || errors.Is(host.err, ErrRefused) {
		t.Fatalf("host: %v, want ErrDeclined", host.err)
	}
	if !errors.Is(join.err, ErrRefused) || !errors.Is(join.err, ErrDeclined) || !errors.Is(join.err, core.ErrUnauthorized) {
		t.Fatalf("join: %v, want ErrRefused wrapping ErrDeclined", join.err)
	}
	if join.res.Handover.Registry != nil || join.res.Handover.Secret != nil {
		t.Fatalf("refused joiner holds handover %+v", join.res.Handover)
	}
}

func TestJoinerDeclineWithdrawsApproval(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	jp := JoinParams{Identity: newcomer.id, Name: "phone", Code: f.inv.Code(),
		Confirm: func(context.Context, Request) (bool, error) { return false, nil }}
	withdrawn := make(chan error, 1)
	hp := f.hostParams(func(ctx context.Context, r Request) (bool, error) {
		<-ctx.Done() // the prompt stays up until it is withdrawn
		withdrawn <- context.Cause(ctx)
		return false, ctx.Err()
	})
	host, join := pair(t, connect(t, newcomer, inviter), hp, jp)
	if !errors.Is(join.err, ErrDeclined) || errors.Is(join.err, ErrRefused) {
		t.Fatalf("join: %v, want ErrDeclined", join.err)
	}
	if !errors.Is(host.err, ErrRefused) || !errors.Is(host.err, ErrDeclined) {
		t.Fatalf("host: %v, want ErrRefused wrapping ErrDeclined", host.err)
	}
	if cause := <-withdrawn; !errors.Is(cause, errJoinerAnswered) {
		t.Fatalf("approval prompt ended by %v, want the joiner's answer", cause)
	}
}

func TestWrongReusedExpiredCodes(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter := newDevice(t, net)
	f := newInvite(t, inviter)
	other := newInvite(t, inviter) // a real code, for another invitation
	never := func(context.Context, Request) (bool, error) {
		t.Error("Approve called for a refused code")
		return false, nil
	}
	run := func(code string, now time.Time, wantErr error) {
		t.Helper()
		newcomer := newDevice(t, net)
		hp := f.hostParams(never)
		hp.Now = func() time.Time { return now }
		host, join := pair(t, connect(t, newcomer, inviter), hp, JoinParams{Identity: newcomer.id, Name: "phone", Code: code,
			Confirm: func(context.Context, Request) (bool, error) {
				t.Error("Confirm called for a refused code")
				return false, nil
			}})
		if !errors.Is(host.err, wantErr) {
			t.Fatalf("host: %v, want %v", host.err, wantErr)
		}
		if !errors.Is(join.err, ErrRefused) || !errors.Is(join.err, wantErr) {
			t.Fatalf("join: %v, want ErrRefused wrapping %v", join.err, wantErr)
		}
		if join.res.Handover.Registry != nil || join.res.SAS != "" {
			t.Fatalf("refused joiner learned %+v", join.res)
		}
	}
	t.Run("wrong", func(t *testing.T) { run(other.inv.Code(), f.now, registry.ErrWrongCode) })
	t.Run("expired", func(t *testing.T) { run(f.inv.Code(), f.inv.Expires, registry.ErrCodeExpired) })
	t.Run("reused", func(t *testing.T) {
		newcomer := newDevice(t, net)
		u := newUsers()
		host, join := pair(t, connect(t, newcomer, inviter), f.hostParams(u.approve),
			JoinParams{Identity: newcomer.id, Code: f.inv.Code(), Show: u.show, Confirm: u.confirm})
		if host.err != nil || join.err != nil {
			t.Fatalf("first use: host %v, join %v", host.err, join.err)
		}
		run(f.inv.Code(), f.now, registry.ErrCodeUsed)
	})
	t.Run("typo", func(t *testing.T) {
		newcomer := newDevice(t, net)
		l := connect(t, newcomer, inviter)
		typo := []byte(f.inv.Code())
		typo[0] = "AB"[boolInt(typo[0] == 'A')] // one substitution: the check character catches it
		_, err := Join(ctxT(t), l.dialSess, l.dialSt, JoinParams{Identity: newcomer.id, Code: string(typo)})
		if !errors.Is(err, registry.ErrMalformedCode) {
			t.Fatalf("typo: %v, want ErrMalformedCode", err)
		}
		if got := readAll(t, l.acceptSt); len(got) != 0 {
			t.Fatalf("a mistyped code sent %d bytes to the inviter", len(got))
		}
	})
}

// TestWrongProofGetsOnlyARefusal plays a joiner by hand: after a hello
// with a wrong proof, the whole of what the inviter sends is one Refuse
// frame.
func TestWrongProofGetsOnlyARefusal(t *testing.T) {
	for _, kind := range []string{"mem", "quic"} {
		t.Run(kind, func(t *testing.T) {
			net := transport.NewMemNetwork()
			inviter, stranger := newDevice(t, net), newDevice(t, net)
			if kind == "quic" {
				inviter, stranger = newQUICDevice(t), newQUICDevice(t)
			}
			wrongProofGetsOnlyARefusal(t, inviter, stranger)
		})
	}
}

func wrongProofGetsOnlyARefusal(t *testing.T, inviter, stranger *device) {
	f := newInvite(t, inviter)
	l := connect(t, stranger, inviter)
	done := make(chan error, 1)
	go func() {
		_, err := Host(ctxT(t), l.acceptSess, l.acceptSt, f.hostParams(func(context.Context, Request) (bool, error) { return true, nil }))
		done <- err
	}()
	guess := hello{typ: registry.TypePhone, name: "phone"}
	guess.proof = joinerProof(codeKey("AAAAAAAAAA"), binding{hash: l.dialSess.HandshakeHash(), joiner: stranger.id.DeviceID(), inviter: inviter.id.DeviceID()}, guess)
	if err := writeMsg(l.dialSt, typeHello, guess.encode()); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, l.dialSt)
	if !bytes.Equal(got, refusalFrame(refuseWrongCode)) {
		t.Fatalf("inviter sent %x, want only the refusal %x", got, refusalFrame(refuseWrongCode))
	}
	if err := <-done; !errors.Is(err, registry.ErrWrongCode) {
		t.Fatalf("host: %v, want ErrWrongCode", err)
	}
}

// TestWrongGuessesBurnTheInvitation: wrong proofs count against the
// Tracker's limit, after which even the right code fails.
func TestWrongGuessesBurnTheInvitation(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter := newDevice(t, net)
	f := newInvite(t, inviter)
	f.tracker = registry.NewTracker(3)
	if err := f.tracker.Add(f.inv); err != nil {
		t.Fatal(err)
	}
	wrong := newInvite(t, inviter).inv.Code()
	for i := 0; i < 3; i++ {
		newcomer := newDevice(t, net)
		host, _ := pair(t, connect(t, newcomer, inviter), f.hostParams(approveAll), JoinParams{Identity: newcomer.id, Code: wrong})
		if !errors.Is(host.err, registry.ErrWrongCode) {
			t.Fatalf("guess %d: %v, want ErrWrongCode", i, host.err)
		}
	}
	newcomer := newDevice(t, net)
	host, join := pair(t, connect(t, newcomer, inviter), f.hostParams(approveAll), JoinParams{Identity: newcomer.id, Code: f.inv.Code()})
	if !errors.Is(host.err, registry.ErrTooManyAttempts) || !errors.Is(join.err, registry.ErrTooManyAttempts) {
		t.Fatalf("right code after the limit: host %v, join %v; want ErrTooManyAttempts", host.err, join.err)
	}
}

func approveAll(context.Context, Request) (bool, error) { return true, nil }

func TestMalformedHelloRefused(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, stranger := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	l := connect(t, stranger, inviter)
	done := make(chan error, 1)
	go func() {
		_, err := Host(ctxT(t), l.acceptSess, l.acceptSt, f.hostParams(approveAll))
		done <- err
	}()
	if err := writeMsg(l.dialSt, typeHello, []byte{1, 200, 3, 'a'}); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, l.dialSt); !bytes.Equal(got, refusalFrame(refuseProtocol)) {
		t.Fatalf("inviter sent %x, want only the protocol refusal", got)
	}
	if err := <-done; !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("host: %v, want ErrProtocol", err)
	}
}

// TestCancelEndsBothSides: a context that ends while the user decides
// stops Host promptly, and the joiner learns the pairing was aborted.
func TestCancelEndsBothSides(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	l := connect(t, newcomer, inviter)
	ctx, cancel := context.WithCancel(ctxT(t))
	hostErr := make(chan error, 1)
	go func() {
		_, err := Host(ctx, l.acceptSess, l.acceptSt, f.hostParams(func(ctx context.Context, r Request) (bool, error) {
			cancel()
			<-ctx.Done()
			return false, ctx.Err()
		}))
		hostErr <- err
	}()
	_, err := Join(ctxT(t), l.dialSess, l.dialSt, JoinParams{Identity: newcomer.id, Code: f.inv.Code()})
	if err == nil || errors.Is(err, ErrDeclined) {
		t.Fatalf("join: %v, want an abort", err)
	}
	if err := <-hostErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("host: %v, want context.Canceled", err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRevealMustMatchCommitment: a joiner that changes its nonce after
// seeing the inviter's (what a man in the middle steering the SAS would
// need) is refused before anyone is asked to approve.
func TestRevealMustMatchCommitment(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	l := connect(t, newcomer, inviter)
	done := make(chan error, 1)
	go func() {
		_, err := Host(ctxT(t), l.acceptSess, l.acceptSt, f.hostParams(func(context.Context, Request) (bool, error) {
			t.Error("Approve called after a reveal that breaks the commitment")
			return true, nil
		}))
		done <- err
	}()
	code, err := registry.ParseCode(f.inv.Code())
	if err != nil {
		t.Fatal(err)
	}
	b := binding{hash: l.dialSess.HandshakeHash(), joiner: newcomer.id.DeviceID(), inviter: inviter.id.DeviceID()}
	h := hello{typ: registry.TypePhone, name: "phone", commit: commitment([nonceSize]byte{1})}
	h.proof = joinerProof(codeKey(code), b, h)
	if err := writeMsg(l.dialSt, typeHello, h.encode()); err != nil {
		t.Fatal(err)
	}
	if _, err := readMsg(l.dialSt, typeChallenge, maxSmallFrame); err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(l.dialSt, typeReveal, make([]byte, nonceSize)); err != nil { // not the committed nonce
		t.Fatal(err)
	}
	if got := readAll(t, l.dialSt); !bytes.Equal(got, refusalFrame(refuseProtocol)) {
		t.Fatalf("after a broken commitment the inviter sent %x, want only the protocol refusal", got)
	}
	if err := <-done; !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("host: %v, want ErrProtocol", err)
	}
}

func TestInvalidParams(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	l := connect(t, newcomer, inviter)
	hp := f.hostParams(approveAll)
	hp.Identity = newcomer.id // not the issuer
	if _, err := Host(ctxT(t), l.acceptSess, l.acceptSt, hp); !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("host with another device's invitation: %v", err)
	}
	l = connect(t, newcomer, inviter)
	_, err := Join(ctxT(t), l.dialSess, l.dialSt, JoinParams{Identity: newcomer.id, Code: f.inv.Code(), Name: "a\u202eb"})
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("join with a bidi override in the name: %v", err)
	}
}

// TestHostOffersEveryOpenInvitation: with two invitations open, a joiner
// proving the older one pairs (its own Approve is asked, and it is the one
// redeemed), and that is no wrong guess: the newer one stays open.
func TestHostOffersEveryOpenInvitation(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer := newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	older := f.inv
	newer, err := registry.NewInvitation(inviter.id, []string{inviter.tr.Addr()}, f.now.Add(10*time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.tracker.Add(newer); err != nil {
		t.Fatal(err)
	}
	var askedOlder, askedNewer bool
	hp := f.hostParams(func(context.Context, Request) (bool, error) { askedNewer = true; return true, nil })
	hp.Invitation = newer
	hp.Others = []Offer{{Invitation: older, Approve: func(context.Context, Request) (bool, error) { askedOlder = true; return true, nil }}}
	jp := JoinParams{Identity: newcomer.id, Name: "phone", Type: registry.TypePhone, Invitation: &older}
	host, join := pair(t, connect(t, newcomer, inviter), hp, jp)
	if host.err != nil || join.err != nil {
		t.Fatalf("host: %v; join: %v", host.err, join.err)
	}
	if !askedOlder || askedNewer {
		t.Fatalf("asked the older invitation's user: %v, the newer's: %v", askedOlder, askedNewer)
	}
	if host.res.Invitation.Code() != older.Code() {
		t.Fatal("the result does not name the redeemed invitation")
	}
	if open := f.tracker.Open(f.now); len(open) != 1 || open[0] != newer.Code() {
		t.Fatalf("open after pairing: %v, want only the newer invitation", open)
	}
	// Four wrong codes later the newer one still works: the older code
	// was never counted as a guess.
	for i := 0; i < 4; i++ {
		if _, err := f.tracker.Redeem(decoy([]string{older.Code(), newer.Code()}), f.now); !errors.Is(err, registry.ErrWrongCode) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if _, err := f.tracker.Redeem(newer.Code(), f.now); err != nil {
		t.Fatalf("newer invitation after 4 wrong codes: %v", err)
	}
}

// TestTrackerOpen: an invitation is open until redeemed, expired or burned.
func TestTrackerOpen(t *testing.T) {
	now := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	net := transport.NewMemNetwork()
	dev := newDevice(t, net)
	mk := func(tr *registry.Tracker) registry.Invitation {
		inv, err := registry.NewInvitation(dev.id, nil, now.Add(time.Minute), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Add(inv); err != nil {
			t.Fatal(err)
		}
		return inv
	}
	tr := registry.NewTracker(0)
	inv := mk(tr)
	if len(tr.Open(now)) != 1 || len(tr.Open(now.Add(time.Minute))) != 0 {
		t.Fatal("open before expiry, closed at it")
	}
	if _, err := tr.Redeem(inv.Code(), now); err != nil || len(tr.Open(now)) != 0 {
		t.Fatalf("redeemed invitation still open (%v)", err)
	}
	inv = mk(tr)
	for i := 0; i < 5; i++ {
		_, _ = tr.Redeem(decoy([]string{inv.Code()}), now)
	}
	if len(tr.Open(now)) != 0 {
		t.Fatal("burned invitation still open")
	}
}
