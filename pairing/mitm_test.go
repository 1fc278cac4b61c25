package pairing

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

// The man in the middle below sits between the new device and the
// inviter: the new device dials it (it answers on the LAN first, say), and
// it dials the inviter. It has two sessions, so two handshake hashes.

// TestMITMWithoutCodeLearnsNothing: the middle relays the joiner's hello;
// its proof is bound to the other session, so the inviter answers with one
// refusal and nothing more.
func TestMITMWithoutCodeLearnsNothing(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer, mitm := newDevice(t, net), newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	toMITM, toInviter := connect(t, newcomer, mitm), connect(t, mitm, inviter)

	var wg sync.WaitGroup
	var hostErr, joinErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, hostErr = Host(ctxT(t), toInviter.acceptSess, toInviter.acceptSt, f.hostParams(func(context.Context, Request) (bool, error) {
			t.Error("the inviter's user was asked about a device that does not know the code")
			return true, nil
		}))
	}()
	go func() {
		defer wg.Done()
		_, joinErr = Join(ctxT(t), toMITM.dialSess, toMITM.dialSt, JoinParams{Identity: newcomer.id, Name: "phone", Code: f.inv.Code()})
	}()

	// The middle relays the hello, then everything the inviter says back.
	fr, err := wire.ReadFrame(toMITM.acceptSt, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(toInviter.dialSt, fr.Type, fr.Payload); err != nil {
		t.Fatal(err)
	}
	fromInviter := readAll(t, toInviter.dialSt)
	if !bytes.Equal(fromInviter, refusalFrame(refuseWrongCode)) {
		t.Fatalf("the inviter sent the middle %x, want only the refusal %x", fromInviter, refusalFrame(refuseWrongCode))
	}
	if _, err := toMITM.acceptSt.Write(fromInviter); err != nil {
		t.Fatal(err)
	}
	_ = toMITM.acceptSt.Close()
	wg.Wait()
	if !errors.Is(hostErr, registry.ErrWrongCode) {
		t.Fatalf("inviter: %v, want ErrWrongCode", hostErr)
	}
	if !errors.Is(joinErr, ErrRefused) {
		t.Fatalf("joiner: %v, want ErrRefused", joinErr)
	}
}

// TestMITMWithCodeShowsDifferentSAS: a middle that knows the code (it saw
// the screen) completes both runs, but the two devices show different
// strings, so users who compare them refuse: no handover reaches the
// middle and the new device gets none from it.
func TestMITMWithCodeShowsDifferentSAS(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer, mitm := newDevice(t, net), newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	toMITM, toInviter := connect(t, newcomer, mitm), connect(t, mitm, inviter)
	code := f.inv.Code()

	// The middle poses as an inviter towards the new device, with the same
	// code in an invitation of its own.
	mitmKey := mitm.id.PublicKey()
	fake, err := registry.ParseInvitation("devicemesh:pair?c=" + strings.ReplaceAll(code, "-", "") +
		"&e=" + strconv.FormatInt(f.inv.Expires.Unix(), 10) +
		"&k=" + base64.RawURLEncoding.EncodeToString(mitmKey[:]) + "&v=1")
	if err != nil {
		t.Fatal(err)
	}
	fakeTracker := registry.NewTracker(0)
	if err := fakeTracker.Add(fake); err != nil {
		t.Fatal(err)
	}

	u := newUsers()
	var inviterSaw, joinerSaw Request
	var wg sync.WaitGroup
	var realHost, mitmJoin, mitmHost, realJoin outcome
	wg.Add(3)
	go func() { // the real inviter, whose user compares with the new device's screen
		defer wg.Done()
		realHost.res, realHost.err = Host(ctxT(t), toInviter.acceptSess, toInviter.acceptSt, f.hostParams(func(ctx context.Context, r Request) (bool, error) {
			inviterSaw = r
			return u.approve(ctx, r)
		}))
	}()
	go func() { // the middle joins the inviter under the new device's name
		defer wg.Done()
		mitmJoin.res, mitmJoin.err = Join(ctxT(t), toInviter.dialSess, toInviter.dialSt,
			JoinParams{Identity: mitm.id, Name: "Anna's phone", Type: registry.TypePhone, Code: code})
	}()
	go func() { // and invites the new device under the inviter's name
		defer wg.Done()
		mitmHost.res, mitmHost.err = Host(ctxT(t), toMITM.acceptSess, toMITM.acceptSt, HostParams{
			Identity: mitm.id, Name: "Anna's laptop", Type: registry.TypeLaptop,
			Invitation: fake, Tracker: fakeTracker, Now: func() time.Time { return f.now },
			Approve:  approveAll,
			Handover: Handover{Registry: []byte("forged registry"), Secret: []byte("attacker's secret")},
		})
	}()
	realJoin.res, realJoin.err = Join(ctxT(t), toMITM.dialSess, toMITM.dialSt, JoinParams{
		Identity: newcomer.id, Name: "Anna's phone", Type: registry.TypePhone, Code: code,
		Show: func(r Request) { joinerSaw = r; u.show(r) }, Confirm: u.confirm,
	})
	wg.Wait()

	if inviterSaw.SAS == "" || joinerSaw.SAS == "" {
		t.Fatalf("a device showed no SAS: inviter %q, joiner %q", inviterSaw.SAS, joinerSaw.SAS)
	}
	if inviterSaw.SAS == joinerSaw.SAS {
		t.Fatalf("both devices show %q through the middle (probability 1e-6: rerun; twice is a bug)", inviterSaw.SAS)
	}
	t.Logf("inviter shows %s, new device shows %s: the users refuse", inviterSaw.SAS, joinerSaw.SAS)
	if !errors.Is(realHost.err, ErrDeclined) {
		t.Fatalf("inviter: %v, want ErrDeclined", realHost.err)
	}
	if !errors.Is(mitmJoin.err, ErrRefused) || mitmJoin.res.Handover.Registry != nil || mitmJoin.res.Handover.Secret != nil {
		t.Fatalf("middle got %+v, %v; want a refusal and no handover", mitmJoin.res.Handover, mitmJoin.err)
	}
	if !errors.Is(realJoin.err, ErrDeclined) || realJoin.res.Handover.Registry != nil {
		t.Fatalf("new device got %+v, %v; want ErrDeclined and no handover", realJoin.res.Handover, realJoin.err)
	}
	if !errors.Is(mitmHost.err, ErrRefused) || !errors.Is(mitmHost.err, ErrDeclined) {
		t.Fatalf("middle's fake inviter: %v, want the new device's refusal", mitmHost.err)
	}
	// The name can be forged; the device id the inviter was asked about is the middle's.
	if inviterSaw.Peer.Name != "Anna's phone" || inviterSaw.Peer.ID != mitm.id.DeviceID() {
		t.Fatalf("inviter was asked about %+v", inviterSaw.Peer)
	}
}

// TestQRInvitationRefusesOtherPeer: with the QR string the joiner knows the
// inviter's key, and sends nothing to any other device.
func TestQRInvitationRefusesOtherPeer(t *testing.T) {
	net := transport.NewMemNetwork()
	inviter, newcomer, mitm := newDevice(t, net), newDevice(t, net), newDevice(t, net)
	f := newInvite(t, inviter)
	inv, err := registry.ParseInvitation(f.inv.String())
	if err != nil {
		t.Fatal(err)
	}
	l := connect(t, newcomer, mitm)
	_, err = Join(ctxT(t), l.dialSess, l.dialSt, JoinParams{Identity: newcomer.id, Invitation: &inv})
	if !errors.Is(err, ErrWrongInviter) {
		t.Fatalf("join: %v, want ErrWrongInviter", err)
	}
	if got := readAll(t, l.acceptSt); len(got) != 0 {
		t.Fatalf("the other device received %d bytes", len(got))
	}
}
