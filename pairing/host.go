package pairing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
)

// HostParams is what the inviting device brings to a pairing.
type HostParams struct {
	// Identity is the inviting device; it must be Invitation's issuer.
	Identity *identity.Identity
	// Name and Type describe the inviting device to the joiner (Name: at
	// most registry.MaxNameLen bytes of printable UTF-8; may be empty).
	Name string
	Type registry.DeviceType
	// Invitation is the open invitation the joiner must prove it holds,
	// and Tracker the one it was registered with: a proof that verifies
	// redeems it there (so it works once, and not after expiry), a wrong
	// one counts as a wrong code there. Required.
	Invitation registry.Invitation
	Tracker    *registry.Tracker
	// Approve asks the user whether the device in the request may join,
	// showing its SAS. It may block until the user answers; its context
	// ends when the joiner declines or gives up meanwhile. Required.
	Approve func(ctx context.Context, r Request) (bool, error)
	// Others are further open invitations of the same issuer, registered
	// with the same Tracker, each with its own Approve (required). The
	// joiner may prove any of them or Invitation: the one it proves is
	// redeemed, its Approve asks the user, and Result.Invitation reports
	// it. A proof matching none of them counts as one wrong code.
	Others []Offer
	// Handover is sent to the joiner once both users approved.
	Handover Handover
	// Now is the clock the invitation's expiry is checked against (nil:
	// time.Now).
	Now func() time.Time
	// Rand is the source of the inviter's nonce (nil: crypto/rand).
	Rand io.Reader
}

// Offer is an open invitation and the question its user is asked.
type Offer struct {
	Invitation registry.Invitation
	Approve    func(ctx context.Context, r Request) (bool, error)
}

// offers returns Invitation with Approve first, then Others.
func (p *HostParams) offers() []Offer {
	return append([]Offer{{Invitation: p.Invitation, Approve: p.Approve}}, p.Others...)
}

func (p *HostParams) check(s Session) error {
	for _, o := range p.Others {
		switch {
		case o.Approve == nil:
			return fmt.Errorf("%w: an offered invitation without Approve", core.ErrInvalidArgument)
		case o.Invitation.Issuer != p.Invitation.Issuer:
			return fmt.Errorf("%w: invitation issued by another device", core.ErrInvalidArgument)
		case o.Invitation.Code() == "":
			return fmt.Errorf("%w: invitation without a code", core.ErrInvalidArgument)
		}
	}
	switch {
	case p.Identity == nil || p.Tracker == nil || p.Approve == nil || s == nil:
		return fmt.Errorf("%w: pairing host needs a session, Identity, Tracker and Approve", core.ErrInvalidArgument)
	case p.Invitation.Issuer != p.Identity.DeviceID():
		return fmt.Errorf("%w: invitation issued by another device", core.ErrInvalidArgument)
	case p.Invitation.Code() == "":
		return fmt.Errorf("%w: invitation without a code", core.ErrInvalidArgument)
	case len(s.HandshakeHash()) == 0 || len(s.HandshakeHash()) > maxBinding:
		return fmt.Errorf("%w: session handshake hash of %d bytes", core.ErrInvalidArgument, len(s.HandshakeHash()))
	}
	if err := checkDevice(p.Type, p.Name); err != nil {
		return err
	}
	if _, err := p.Handover.encode(); err != nil {
		return err
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	return nil
}

// Host runs the inviting side of a pairing on st, a stream of s opened by
// the joining device. It reads the joiner's proof and, unless the proof
// verifies and the invitation is redeemed, answers with one Refuse message
// and nothing else. Otherwise both sides show the SAS, Approve asks the
// user, the joiner's user may confirm too, and the Handover goes out; the
// result is returned once the joiner has acknowledged it.
//
// Errors: registry.ErrWrongCode, ErrCodeUsed, ErrCodeExpired or
// ErrTooManyAttempts for a bad proof or code; ErrDeclined when Approve said
// no; ErrRefused (wrapping the reason) when the joiner refused;
// core.ErrProtocol for a malformed message; core.ErrInvalidArgument for bad
// params. Host owns st and closes it before returning; when ctx ends, the
// stream is closed and Host returns.
func Host(ctx context.Context, s Session, st core.Stream, p HostParams) (Result, error) {
	h := &host{s: s, st: st, p: p}
	defer h.wg.Wait() // after Close, which ends any read still in flight
	defer st.Close()
	defer own(ctx, st)()
	if err := h.p.check(s); err != nil {
		refuse(st, err)
		return Result{}, fmt.Errorf("pairing host: %w", err)
	}
	res, err := h.run(ctx)
	if err != nil {
		refuse(st, err)
		return Result{}, fmt.Errorf("pairing host with %s: %w", s.Peer().Short(), err)
	}
	return res, nil
}

// host is one run of Host.
type host struct {
	s  Session
	st core.Stream
	p  HostParams
	wg sync.WaitGroup
}

func (h *host) run(ctx context.Context) (Result, error) {
	b := binding{hash: h.s.HandshakeHash(), joiner: h.s.Peer(), inviter: h.p.Identity.DeviceID()}
	offers := h.p.offers()
	keys := make([][]byte, len(offers))
	for i, o := range offers {
		code, err := registry.ParseCode(o.Invitation.Code())
		if err != nil {
			return Result{}, err
		}
		keys[i] = codeKey(code)
	}
	hl, chosen, err := h.readHello(offers, keys, b)
	if err != nil {
		return Result{}, err
	}
	key, offer := keys[chosen], offers[chosen]
	// The joiner proved the code: only now does anything but a refusal go out.
	c := challenge{typ: h.p.Type, name: h.p.Name}
	if c.nonce, err = nonce(h.p.Rand); err != nil {
		return Result{}, err
	}
	c.proof = inviterProof(key, b, hl.commit, c)
	if err := writeMsg(h.st, typeChallenge, c.encode()); err != nil {
		return Result{}, err
	}
	payload, err := readMsg(h.st, typeReveal, maxSmallFrame)
	if err != nil {
		return Result{}, err
	}
	if _, err := decodeFixed(payload, nonceSize, "reveal"); err != nil {
		return Result{}, err
	}
	joinerNonce := [nonceSize]byte(payload)
	if cm := commitment(joinerNonce); subtle.ConstantTimeCompare(cm[:], hl.commit[:]) != 1 {
		return Result{}, fmt.Errorf("%w: revealed nonce does not match the commitment", core.ErrProtocol)
	}
	req := Request{
		Peer: Device{ID: h.s.Peer(), Key: h.s.PeerKey(), Name: hl.name, Type: hl.typ},
		SAS:  sas(b, joinerNonce, c.nonce),
	}
	if err := h.approve(ctx, offer.Approve, req); err != nil {
		return Result{}, err
	}
	res, err := h.handOver(req)
	res.Invitation = offer.Invitation
	return res, err
}

// readHello reads the joiner's hello and checks its proof against every
// offer (keys[i] is offers[i]'s), then redeems the invitation it proves
// and returns its index. Every failure here is answered by a refusal
// alone.
func (h *host) readHello(offers []Offer, keys [][]byte, b binding) (hello, int, error) {
	payload, err := readMsg(h.st, typeHello, maxSmallFrame)
	if err != nil {
		return hello{}, 0, err
	}
	hl, err := decodeHello(payload)
	if err != nil {
		return hello{}, 0, err
	}
	chosen := -1
	for i, key := range keys { // every key is tried: no early exit
		want := joinerProof(key, b, hl)
		if hmac.Equal(want[:], hl.proof[:]) {
			chosen = i
		}
	}
	now := h.p.Now()
	if chosen < 0 {
		return hello{}, 0, h.wrongProof(offers, now)
	}
	if _, err := h.p.Tracker.Redeem(offers[chosen].Invitation.Code(), now); err != nil {
		return hello{}, 0, err
	}
	return hl, chosen, nil
}

// wrongProof counts a wrong code in the Tracker, so that its limit on
// guesses covers pairing too. The Tracker counts codes, not proofs, so it
// is handed a decoy: a well-formed code that differs from every offered
// invitation's. Its answer (ErrWrongCode, or ErrTooManyAttempts once the
// invitations are burnt) is the error.
func (h *host) wrongProof(offers []Offer, now time.Time) error {
	codes := make([]string, len(offers))
	for i, o := range offers {
		codes[i] = o.Invitation.Code()
	}
	_, err := h.p.Tracker.Redeem(decoy(codes), now)
	if err == nil || !errors.Is(err, registry.ErrTooManyAttempts) {
		return registry.ErrWrongCode
	}
	return err
}

// decoy returns a well-formed code that differs from every one of codes
// (at most registry.MaxOutstanding): the first one's with another first
// character (the check character is found by trying all of them).
func decoy(codes []string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	c, _ := registry.ParseCode(codes[0])
	if len(c) != registry.CodeLen {
		c = "AAAAAAAAAA"
	}
	canon := make(map[string]bool, len(codes))
	for _, code := range codes {
		if k, err := registry.ParseCode(code); err == nil {
			canon[k] = true
		}
	}
	for f := 0; f < len(alphabet); f++ {
		body := alphabet[f:f+1] + c[1:registry.CodeLen-1]
		for i := 0; i < len(alphabet); i++ {
			if d, err := registry.ParseCode(body + alphabet[i:i+1]); err == nil && !canon[d] {
				return d
			}
		}
	}
	return "AAAAAAAAAA" // unreachable: 32 first characters, at most 16 codes
}

// approve asks the user while watching for the joiner's own verdict. A
// joiner that declines or leaves meanwhile withdraws the question (the
// context passed to Approve ends) and its answer is the outcome.
func (h *host) approve(ctx context.Context, ask func(context.Context, Request) (bool, error), req Request) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	verdict := readAsync(h.st, typeVerdict, maxSmallFrame, &h.wg, func(p *pending) {
		if joinerVerdict(p) != nil {
			cancel(errJoinerAnswered)
		}
	})
	ok, err := ask(actx, req)
	if verdict.ready() {
		if jerr := joinerVerdict(verdict); jerr != nil {
			return jerr
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("approve: %w", err)
	case !ok:
		return ErrDeclined
	}
	select {
	case <-verdict.done:
	case <-ctx.Done():
		return fmt.Errorf("await the joiner's verdict: %w", context.Cause(ctx))
	}
	return joinerVerdict(verdict)
}

// errJoinerAnswered withdraws Approve once the joiner has said no.
var errJoinerAnswered = errors.New("the joining device declined or left")

// joinerVerdict interprets the joiner's verdict, once in: nil if it
// confirmed.
func joinerVerdict(p *pending) error {
	if p.err != nil {
		return fmt.Errorf("await the joiner's verdict: %w", p.err)
	}
	ok, err := decodeVerdict(p.payload)
	if err != nil {
		return err
	}
	if !ok {
		return quiet{fmt.Errorf("%w: %w", ErrRefused, ErrDeclined)}
	}
	return nil
}

// handOver sends the Welcome and waits for the joiner's acknowledgement.
func (h *host) handOver(req Request) (Result, error) {
	payload, err := h.p.Handover.encode()
	if err != nil {
		return Result{}, err
	}
	if err := writeMsg(h.st, typeWelcome, payload); err != nil {
		return Result{}, err
	}
	ack, err := readMsg(h.st, typeAck, maxSmallFrame)
	if err != nil {
		return Result{}, fmt.Errorf("await acknowledgement: %w", err)
	}
	want := sha256.Sum256(payload)
	if _, err := decodeFixed(ack, digestSize, "ack"); err != nil {
		return Result{}, err
	}
	if subtle.ConstantTimeCompare(ack, want[:]) != 1 {
		return Result{}, fmt.Errorf("%w: joiner acknowledged another handover", core.ErrProtocol)
	}
	return Result{Peer: req.Peer, SAS: req.SAS, Handover: h.p.Handover}, nil
}
