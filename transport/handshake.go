package transport

import (
	"context"
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// exporterLabel is the TLS exporter label whose output binds the Noise
// handshake to the QUIC connection it runs on.
const exporterLabel = "EXPORTER-devicemesh-fed-noise-binding"

// prologueLabel starts every Noise prologue.
const prologueLabel = "devicemesh-fed noise prologue v1"

// dhLen is the size of an X25519 public key, which opens the Noise
// messages that carry an ephemeral key.
const dhLen = 32

// versionRange is the span of protocol versions an endpoint speaks.
type versionRange struct{ min, max uint16 }

var defaultVersions = versionRange{wire.VersionMin, wire.VersionMax}

// handshaker holds what one side brings to a handshake.
type handshaker struct {
	keys     *noiseKeys
	pre      *precomputed // an IK initiator's work done ahead, or nil
	static   noise.DHKey
	claim    core.PublicKey // the key we present in our payload
	versions versionRange
	// authorize admits or refuses the proven peer; it runs before the
	// verdict is sent, so it is also where per-peer caps are enforced.
	authorize func(ctx context.Context, id core.DeviceID, key core.PublicKey) error
}

func newHandshaker(id *identity.Identity, v versionRange, auth func(context.Context, core.DeviceID, core.PublicKey) error) handshaker {
	return newHandshakerKeys(id, newNoiseKeys(id), v, auth)
}

// newHandshakerKeys is newHandshaker with id's key material derived
// already (keys must be id's).
func newHandshakerKeys(id *identity.Identity, keys *noiseKeys, v versionRange, auth func(context.Context, core.DeviceID, core.PublicKey) error) handshaker {
	return handshaker{
		keys:      keys,
		static:    keys.static,
		claim:     id.PublicKey(),
		versions:  v,
		authorize: auth,
	}
}

// peerInfo is what a handshake proves about the other side.
type peerInfo struct {
	id      core.DeviceID
	key     core.PublicKey
	version uint16
	hash    []byte // Noise handshake hash once complete (Session.HandshakeHash)
	// verdictPending: the session may start, and the caller reads the
	// initiator's verdict afterwards (IK responder).
	verdictPending bool
}

// prologue binds the handshake to the channel (binding: the TLS exporter)
// and to the initiator's version offer, so neither can be swapped.
func prologue(binding, hello []byte) []byte {
	p := make([]byte, 0, len(prologueLabel)+2+len(binding)+len(hello))
	p = append(p, prologueLabel...)
	p = binary.BigEndian.AppendUint16(p, uint16(len(binding)))
	p = append(p, binding...)
	return append(p, hello...)
}

// verifyPeer checks that the Noise static key the peer proved is the one
// derived from the Ed25519 key it claims.
func (h handshaker) verifyPeer(p wire.Payload, remoteStatic []byte) (peerInfo, error) {
	want, err := h.keys.peerStatic(p.Key)
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: claimed key: %w", core.ErrHandshake, err)
	}
	if subtle.ConstantTimeCompare(want, remoteStatic) != 1 {
		return peerInfo{}, fmt.Errorf("%w: static key does not belong to the claimed device", core.ErrHandshake)
	}
	return peerInfo{id: core.DeviceIDFromKey(p.Key), key: p.Key, version: p.Version}, nil
}

// refuse sends a Reject frame for err (best effort) and returns err. A
// refusal that came from the peer is not echoed back.
func refuse(w io.Writer, err error) error {
	var rj *wire.RejectError
	if errors.As(err, &rj) {
		return err
	}
	rej := wire.Reject{Code: wire.CodeFor(err), Reason: reasonFor(err)}
	var ne *core.NoticeError
	if errors.As(err, &ne) {
		rej.Notice = ne.Notice
	}
	_ = wire.WriteFrame(w, wire.TypeReject, rej.Encode())
	return err
}

// reasonFor is the short text sent to a refused peer: the sentinel's text
// only, so nothing about our configuration or registry leaks.
func reasonFor(err error) string {
	for _, s := range []error{core.ErrVersionMismatch, core.ErrUnauthorized, wire.ErrBusy, core.ErrFrameTooLarge, core.ErrProtocol} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return core.ErrHandshake.Error()
}

// authorizeErr makes sure a refusal wraps core.ErrUnauthorized (or ErrBusy).
func authorizeErr(id core.DeviceID, err error) error {
	if errors.Is(err, core.ErrUnauthorized) || errors.Is(err, wire.ErrBusy) {
		return fmt.Errorf("authorize %s: %w", id.Short(), err)
	}
	return fmt.Errorf("authorize %s: %w: %w", id.Short(), core.ErrUnauthorized, err)
}

// initiate runs the dialing side. expect, when non-nil, is the responder's
// registered key (IK); nil runs XX. expectID, when non-zero, is the device
// the responder must prove to be.
func (h handshaker) initiate(ctx context.Context, rw io.ReadWriter, binding []byte, expect *core.PublicKey, expectID core.DeviceID) (peerInfo, error) {
	hello := wire.Hello{Min: h.versions.min, Max: h.versions.max, Pattern: wire.PatternXX}
	dh := h.keys.newDH(h.pre)
	defer dh.wait()
	cfg := noise.Config{CipherSuite: dh.suite(), Pattern: noise.HandshakeXX, Initiator: true, StaticKeypair: h.static}
	var first []byte // payload of message 1: only IK carries our identity there
	if expect != nil {
		rs, err := h.keys.peerStatic(*expect)
		if err != nil {
			return peerInfo{}, fmt.Errorf("%w: registered key: %w", core.ErrHandshake, err)
		}
		hello.Pattern, cfg.Pattern, cfg.PeerStatic = wire.PatternIK, noise.HandshakeIK, rs
		first = wire.Payload{Key: h.claim}.Encode()
	}
	helloBytes := hello.Encode()
	cfg.Prologue = prologue(binding, helloBytes)
	hs, err := noise.NewHandshakeState(cfg)
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	msg1, _, _, err := hs.WriteMessage(nil, first)
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	out, _ := wire.AppendFrame(nil, wire.TypeHello, helloBytes)
	out, _ = wire.AppendFrame(out, wire.TypeNoise, msg1)
	if _, err := rw.Write(out); err != nil {
		return peerInfo{}, fmt.Errorf("send hello: %w", err)
	}
	var early *ecdh.PrivateKey // IK: se = DH(s, re) can start once re is read
	if expect != nil {
		early = h.keys.priv
	}
	peer, err := h.readResponder(rw, hs, hello, dh, early)
	if err != nil {
		return peerInfo{}, refuse(rw, err)
	}
	if !expectID.IsZero() && peer.id != expectID {
		return peerInfo{}, refuse(rw, fmt.Errorf("%w: peer is %s, want %s", core.ErrHandshake, peer.id.Short(), expectID.Short()))
	}
	if err := h.authorize(ctx, peer.id, peer.key); err != nil {
		return peerInfo{}, refuse(rw, authorizeErr(peer.id, err))
	}
	if expect != nil { // IK: we learned the responder last, so we give the verdict
		if err := wire.WriteFrame(rw, wire.TypeAccept, nil); err != nil {
			return peerInfo{}, fmt.Errorf("send verdict: %w", err)
		}
		peer.hash = channelBinding(hs)
		return peer, nil
	}
	msg3, _, _, err := hs.WriteMessage(nil, wire.Payload{Key: h.claim}.Encode())
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	if err := wire.WriteFrame(rw, wire.TypeNoise, msg3); err != nil {
		return peerInfo{}, fmt.Errorf("send handshake: %w", err)
	}
	if err := awaitAccept(rw); err != nil {
		return peerInfo{}, err
	}
	peer.hash = channelBinding(hs)
	return peer, nil
}

// readResponder reads and checks the responder's Noise message.
// With early non-nil, DH(early, re) starts on its own goroutine as soon as
// the message (which opens with the responder's ephemeral key re) is read.
func (h handshaker) readResponder(r io.Reader, hs *noise.HandshakeState, hello wire.Hello, dh *handshakeDH, early *ecdh.PrivateKey) (peerInfo, error) {
	msg, err := wire.Expect(r, wire.TypeNoise, wire.MaxHandshakeFrame)
	if err != nil {
		return peerInfo{}, fmt.Errorf("read handshake: %w", err)
	}
	if early != nil && len(msg) >= dhLen {
		dh.ahead(early, msg[:dhLen])
	}
	plain, _, _, err := hs.ReadMessage(nil, msg)
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: responder message: %w", core.ErrHandshake, err)
	}
	p, err := wire.DecodePayload(plain)
	if err != nil {
		return peerInfo{}, err
	}
	if p.Version < hello.Min || p.Version > hello.Max {
		return peerInfo{}, fmt.Errorf("%w: responder chose version %d outside %d-%d", core.ErrProtocol, p.Version, hello.Min, hello.Max)
	}
	return h.verifyPeer(p, hs.PeerStatic())
}

// respond runs the accepting side.
func (h handshaker) respond(ctx context.Context, rw io.ReadWriter, binding []byte) (peerInfo, error) {
	helloBytes, err := wire.Expect(rw, wire.TypeHello, wire.MaxHandshakeFrame)
	if err != nil {
		return peerInfo{}, fmt.Errorf("read hello: %w", err)
	}
	hello, err := wire.DecodeHello(helloBytes)
	if err != nil {
		return peerInfo{}, refuse(rw, err)
	}
	version, err := hello.Select(h.versions.min, h.versions.max)
	if err != nil {
		return peerInfo{}, refuse(rw, err)
	}
	dh := h.keys.newDH(nil)
	defer dh.wait()
	cfg := noise.Config{
		CipherSuite: dh.suite(), Pattern: noise.HandshakeXX, StaticKeypair: h.static,
		Prologue: prologue(binding, helloBytes),
	}
	if hello.Pattern == wire.PatternIK {
		cfg.Pattern = noise.HandshakeIK
	}
	hs, err := noise.NewHandshakeState(cfg)
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	msg1, err := wire.Expect(rw, wire.TypeNoise, wire.MaxHandshakeFrame)
	if err != nil {
		return peerInfo{}, fmt.Errorf("read handshake: %w", err)
	}
	if hello.Pattern == wire.PatternIK && len(msg1) >= dhLen {
		// The message opens with the initiator's ephemeral key ie: our
		// reply's ee = DH(e, ie) runs while noise reads the message.
		if e, err := h.keys.ephemeral(); err == nil {
			dh.useEphemeral(e)
			dh.ahead(e, msg1[:dhLen])
		}
	}
	plain, _, _, err := hs.ReadMessage(nil, msg1)
	if err != nil {
		return peerInfo{}, refuse(rw, fmt.Errorf("%w: initiator message: %w", core.ErrHandshake, err))
	}
	if hello.Pattern == wire.PatternIK {
		return h.respondIK(ctx, rw, hs, plain, version)
	}
	return h.respondXX(ctx, rw, hs, plain, version)
}

func (h handshaker) respondIK(ctx context.Context, rw io.ReadWriter, hs *noise.HandshakeState, plain []byte, version uint16) (peerInfo, error) {
	peer, err := h.checkInitiator(ctx, plain, hs.PeerStatic())
	if err != nil {
		return peerInfo{}, refuse(rw, err)
	}
	msg2, _, _, err := hs.WriteMessage(nil, wire.Payload{Version: version, Key: h.claim}.Encode())
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	if err := wire.WriteFrame(rw, wire.TypeNoise, msg2); err != nil {
		return peerInfo{}, fmt.Errorf("send handshake: %w", err)
	}
	// The initiator proved its key in its first message (bound to this
	// TLS session by the prologue) and we admitted it, so the session
	// starts now, without waiting a round trip for its verdict: our first
	// application bytes travel right behind this reply, to the device we
	// just authorized and nobody else. The verdict, read afterwards
	// (endpoint.awaitVerdict), only says whether the initiator keeps the
	// session; until it has our reply it sends no application byte.
	peer.version, peer.hash, peer.verdictPending = version, channelBinding(hs), true
	return peer, nil
}

func (h handshaker) respondXX(ctx context.Context, rw io.ReadWriter, hs *noise.HandshakeState, plain []byte, version uint16) (peerInfo, error) {
	if len(plain) != 0 {
		return peerInfo{}, refuse(rw, fmt.Errorf("%w: payload in first XX message", core.ErrProtocol))
	}
	msg2, _, _, err := hs.WriteMessage(nil, wire.Payload{Version: version, Key: h.claim}.Encode())
	if err != nil {
		return peerInfo{}, fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	if err := wire.WriteFrame(rw, wire.TypeNoise, msg2); err != nil {
		return peerInfo{}, fmt.Errorf("send handshake: %w", err)
	}
	msg3, err := wire.Expect(rw, wire.TypeNoise, wire.MaxHandshakeFrame)
	if err != nil {
		return peerInfo{}, fmt.Errorf("read handshake: %w", err)
	}
	plain, _, _, err = hs.ReadMessage(nil, msg3)
	if err != nil {
		return peerInfo{}, refuse(rw, fmt.Errorf("%w: initiator message: %w", core.ErrHandshake, err))
	}
	peer, err := h.checkInitiator(ctx, plain, hs.PeerStatic())
	if err != nil {
		return peerInfo{}, refuse(rw, err)
	}
	if err := wire.WriteFrame(rw, wire.TypeAccept, nil); err != nil {
		return peerInfo{}, fmt.Errorf("send verdict: %w", err)
	}
	peer.version, peer.hash = version, channelBinding(hs)
	return peer, nil
}

// checkInitiator verifies and authorizes the initiator's identity payload.
func (h handshaker) checkInitiator(ctx context.Context, plain, remoteStatic []byte) (peerInfo, error) {
	p, err := wire.DecodePayload(plain)
	if err != nil {
		return peerInfo{}, err
	}
	if p.Version != 0 {
		return peerInfo{}, fmt.Errorf("%w: initiator payload names version %d", core.ErrProtocol, p.Version)
	}
	peer, err := h.verifyPeer(p, remoteStatic)
	if err != nil {
		return peerInfo{}, err
	}
	if err := h.authorize(ctx, peer.id, peer.key); err != nil {
		return peerInfo{}, authorizeErr(peer.id, err)
	}
	return peer, nil
}

// awaitAccept reads the peer's verdict: an empty Accept frame, or a Reject.
func awaitAccept(r io.Reader) error {
	p, err := wire.Expect(r, wire.TypeAccept, wire.MaxHandshakeFrame)
	if err != nil {
		return fmt.Errorf("await verdict: %w", err)
	}
	if len(p) != 0 {
		return fmt.Errorf("await verdict: %w: accept frame with %d payload bytes", core.ErrProtocol, len(p))
	}
	return nil
}
