package pairing

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
)

// JoinParams is what the joining device brings to a pairing.
type JoinParams struct {
	// Identity is the joining device. Required.
	Identity *identity.Identity
	// Name and Type describe it to the inviting device's user (Name: at
	// most registry.MaxNameLen bytes of printable UTF-8).
	Name string
	Type registry.DeviceType
	// Invitation is the parsed QR string (registry.ParseInvitation). The
	// session's peer must be its issuer, or Join fails with
	// ErrWrongInviter before sending anything. Set it or Code.
	Invitation *registry.Invitation
	// Code is the typed code, when the user has no QR string. The
	// session's peer is taken to be the inviter; the SAS comparison is what
	// then tells the user that it really is.
	Code string
	// Show, when set, is called with the SAS as soon as it is known, so
	// the device can display it while the other user decides. It must not
	// block.
	Show func(Request)
	// Confirm, when set, asks this device's user too (after Show); the
	// pairing goes on only if it returns true. Its context ends if the
	// inviter refuses meanwhile.
	Confirm func(ctx context.Context, r Request) (bool, error)
	// MaxHandover bounds the handover this device accepts, in bytes (0:
	// 1 MiB; at most MaxHandover).
	MaxHandover int
	// Rand is the source of the joiner's nonce (nil: crypto/rand).
	Rand io.Reader
}

// code returns the canonical pairing code, checking the session's peer
// against the invitation's issuer.
func (p *JoinParams) code(s Session) (string, error) {
	if p.Identity == nil || s == nil {
		return "", fmt.Errorf("%w: pairing join needs a session and an Identity", core.ErrInvalidArgument)
	}
	if n := len(s.HandshakeHash()); n == 0 || n > maxBinding {
		return "", fmt.Errorf("%w: session handshake hash of %d bytes", core.ErrInvalidArgument, n)
	}
	if err := checkDevice(p.Type, p.Name); err != nil {
		return "", err
	}
	if p.MaxHandover <= 0 {
		p.MaxHandover = 1 << 20
	}
	p.MaxHandover = min(p.MaxHandover, MaxHandover)
	if p.Invitation == nil {
		return registry.ParseCode(p.Code)
	}
	if s.Peer() != p.Invitation.Issuer {
		return "", ErrWrongInviter
	}
	return registry.ParseCode(p.Invitation.Code())
}

// Join runs the joining side of a pairing on st, a stream of s that this
// device opened to the inviting device. It proves knowledge of the code,
// bound to this session, checks the inviter's proof in return, shows the
// SAS (Show, Confirm) and returns the Handover once the inviter's user
// approved.
//
// Errors: registry.ErrMalformedCode for a mistyped code and
// ErrWrongInviter for a peer that did not issue the invitation (nothing is
// sent in either case); ErrRefused wrapping the inviter's reason
// (registry.ErrWrongCode, ErrCodeUsed, ErrCodeExpired, ErrTooManyAttempts,
// ErrDeclined, ...); ErrInviterUnproven when the inviter does not know the
// code; ErrDeclined when Confirm said no; core.ErrProtocol for a malformed
// message. Join owns st and closes it before returning; when ctx ends, the
// stream is closed and Join returns.
func Join(ctx context.Context, s Session, st core.Stream, p JoinParams) (Result, error) {
	j := &joiner{s: s, st: st, p: p}
	defer j.wg.Wait() // after Close, which ends any read still in flight
	defer st.Close()
	defer own(ctx, st)()
	code, err := j.p.code(s)
	if err != nil {
		return Result{}, fmt.Errorf("pairing join: %w", quiet{err})
	}
	res, err := j.run(ctx, code)
	if err != nil {
		refuse(st, err)
		return Result{}, fmt.Errorf("pairing join with %s: %w", s.Peer().Short(), err)
	}
	return res, nil
}

// joiner is one run of Join.
type joiner struct {
	s  Session
	st core.Stream
	p  JoinParams
	wg sync.WaitGroup
}

func (j *joiner) run(ctx context.Context, code string) (Result, error) {
	key := codeKey(code)
	b := binding{hash: j.s.HandshakeHash(), joiner: j.p.Identity.DeviceID(), inviter: j.s.Peer()}
	myNonce, err := nonce(j.p.Rand)
	if err != nil {
		return Result{}, err
	}
	hl := hello{typ: j.p.Type, name: j.p.Name, commit: commitment(myNonce)}
	hl.proof = joinerProof(key, b, hl)
	if err := writeMsg(j.st, typeHello, hl.encode()); err != nil {
		return Result{}, err
	}
	payload, err := readMsg(j.st, typeChallenge, maxSmallFrame)
	if err != nil {
		return Result{}, err
	}
	c, err := decodeChallenge(payload)
	if err != nil {
		return Result{}, err
	}
	if want := inviterProof(key, b, hl.commit, c); !hmac.Equal(want[:], c.proof[:]) {
		return Result{}, ErrInviterUnproven
	}
	if err := writeMsg(j.st, typeReveal, myNonce[:]); err != nil {
		return Result{}, err
	}
	req := Request{
		Peer: Device{ID: j.s.Peer(), Key: j.s.PeerKey(), Name: c.name, Type: c.typ},
		SAS:  sas(b, myNonce, c.nonce),
	}
	if j.p.Show != nil {
		j.p.Show(req)
	}
	welcome, err := j.confirm(ctx, req)
	if err != nil {
		return Result{}, err
	}
	h, err := decodeHandover(welcome)
	if err != nil {
		return Result{}, err
	}
	ack := sha256.Sum256(welcome)
	if err := writeMsg(j.st, typeAck, ack[:]); err != nil {
		return Result{}, err
	}
	return Result{Peer: req.Peer, SAS: req.SAS, Handover: h}, nil
}

// confirm asks this device's user (if Confirm is set) while watching for
// the inviter's answer, sends the verdict and returns the Welcome payload.
func (j *joiner) confirm(ctx context.Context, req Request) ([]byte, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	answer := readAsync(j.st, typeWelcome, j.p.MaxHandover, &j.wg, func(p *pending) {
		if p.err != nil {
			cancel(p.err)
		}
	})
	if j.p.Confirm != nil {
		ok, err := j.p.Confirm(cctx, req)
		if answer.ready() && answer.err != nil {
			return nil, answer.err // the inviter refused first: that is the outcome
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("confirm: %w", err)
		case !ok:
			_ = writeMsg(j.st, typeVerdict, encodeVerdict(false))
			return nil, quiet{ErrDeclined}
		}
	}
	if err := writeMsg(j.st, typeVerdict, encodeVerdict(true)); err != nil {
		// The inviter may have refused and closed the stream meanwhile:
		// its refusal, already in, is the better answer.
		if _, aerr := answer.wait(ctx); errors.Is(aerr, ErrRefused) {
			return nil, aerr
		}
		return nil, err
	}
	return answer.wait(ctx)
}
