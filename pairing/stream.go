package pairing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
)

// Session is what pairing needs from the session its stream belongs to:
// an authenticated but not yet trusted session, whose handshake hash binds
// the pairing to it. *transport.Session implements it.
type Session interface {
	// Peer and PeerKey are the identity the peer proved in the handshake.
	Peer() core.DeviceID
	PeerKey() core.PublicKey
	// HandshakeHash is the session's channel binding, identical on both
	// ends and different on every other session.
	HandshakeHash() []byte
}

// Request is what a user is shown before saying yes: the other device as
// it describes itself, and the short authentication string to compare with
// the one the other device shows.
type Request struct {
	Peer Device
	// SAS is six digits, such as "042 917". The user approves only if the
	// other device shows exactly the same.
	SAS string
}

// Result is a completed pairing.
type Result struct {
	// Peer is the other device.
	Peer Device
	// SAS is the string both devices showed.
	SAS string
	// Handover is what the inviter sent: on the joiner, what it received;
	// on the inviter, what the joiner acknowledged.
	Handover Handover
	// Invitation is, on the inviter, the invitation the joiner proved and
	// that was redeemed (one of HostParams' offers); zero on the joiner.
	Invitation registry.Invitation
}

// quiet marks an error that must not be answered with a Refuse message:
// the peer already knows (it refused, or we sent our verdict), or it must
// learn nothing (it is not the device we meant to talk to).
type quiet struct{ error }

func (q quiet) Unwrap() error { return q.error }

// refuse tells the peer, best effort, why we stop: one Refuse frame
// carrying only the code of err's sentinel.
func refuse(w io.Writer, err error) {
	var q quiet
	if errors.As(err, &q) || errors.Is(err, ErrRefused) {
		return
	}
	_ = wire.WriteFrame(w, typeRefuse, encodeRefuse(codeFor(err)))
}

// readMsg reads one frame of type want, at most limit bytes. A Refuse
// frame becomes an error wrapping ErrRefused and the refusal's reason; any
// other type is a protocol violation.
func readMsg(r io.Reader, want wire.Type, limit int) ([]byte, error) {
	f, err := wire.ReadFrame(r, nil, limit)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: stream ended before the %v message: %w", ErrAborted, want, err)
		}
		return nil, err
	}
	switch f.Type {
	case want:
		return f.Payload, nil
	case typeRefuse:
		c, err := decodeRefuse(f.Payload)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrRefused, c.err())
	}
	return nil, fmt.Errorf("%w: pairing got frame %v, want %v", core.ErrProtocol, f.Type, want)
}

// pending is one message being read on a goroutine while a user decides.
type pending struct {
	done    chan struct{}
	payload []byte
	err     error
}

// readAsync reads the next message of type want on a goroutine counted in
// wg, and calls arrived (if non-nil) on that goroutine as soon as it is in.
func readAsync(r io.Reader, want wire.Type, limit int, wg *sync.WaitGroup, arrived func(*pending)) *pending {
	p := &pending{done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.payload, p.err = readMsg(r, want, limit)
		close(p.done)
		if arrived != nil {
			arrived(p)
		}
	}()
	return p
}

// ready reports whether the message (or the error reading it) is in.
func (p *pending) ready() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the message once it is in, or the context's cause.
func (p *pending) wait(ctx context.Context) ([]byte, error) {
	select {
	case <-p.done:
		return p.payload, p.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// writeMsg writes one pairing frame.
func writeMsg(w io.Writer, t wire.Type, payload []byte) error {
	if err := wire.WriteFrame(w, t, payload); err != nil {
		return fmt.Errorf("pairing: %w", err)
	}
	return nil
}

// nonce reads a fresh nonce from r (nil: crypto/rand).
func nonce(r io.Reader) ([nonceSize]byte, error) {
	var n [nonceSize]byte
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return n, fmt.Errorf("pairing nonce: %w", err)
	}
	return n, nil
}

// own closes st when ctx ends, so that blocked reads and writes return;
// the returned function stops that.
func own(ctx context.Context, st core.Stream) func() bool {
	return context.AfterFunc(ctx, func() { _ = st.Close() })
}
