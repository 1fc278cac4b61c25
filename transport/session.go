package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// mux is one connection carrying many streams: a QUIC connection or an
// in-memory link. Its methods are safe for concurrent use.
type mux interface {
	open(ctx context.Context) (core.Stream, error)
	accept(ctx context.Context) (core.Stream, error)
	// close ends the connection, telling the peer why; idempotent.
	close(reason error)
	done() <-chan struct{}
	// context ends with the connection.
	context() context.Context
	// cause says why the connection ended, once done is closed.
	cause() error
	// remoteAddr is the peer's network address, "" when there is none.
	remoteAddr() string
}

// Session is an authenticated, authorized connection to one peer device. It
// implements core.Session; its methods are safe for concurrent use.
type Session struct {
	m       mux
	peer    core.DeviceID
	key     core.PublicKey
	version uint16
	hash    []byte // Noise handshake hash; see HandshakeHash
	limits  Limits
	log     *slog.Logger

	born uint64 // admission order in the endpoint: lower is older

	closeOnce sync.Once
	mu        sync.Mutex
	local     error // the reason we gave, when we closed first
}

var _ core.Session = (*Session)(nil)

// Peer returns the authenticated device id of the other side.
func (s *Session) Peer() core.DeviceID { return s.peer }

// PeerKey returns the public key the peer proved in the handshake.
func (s *Session) PeerKey() core.PublicKey { return s.key }

// Version returns the protocol version negotiated for the session.
func (s *Session) Version() uint16 { return s.version }

// RemoteAddr returns the peer's network address as seen from here (for
// QUIC, the UDP address its packets come from), or "" when the transport
// has none.
func (s *Session) RemoteAddr() string { return s.m.remoteAddr() }

// Done is closed once the session has ended.
func (s *Session) Done() <-chan struct{} { return s.m.done() }

// Err returns nil while the session is live, then why it ended: an error
// wrapping core.ErrClosed for an orderly close, or the sentinel matching the
// reason the peer (or we) gave, such as core.ErrProtocol.
func (s *Session) Err() error {
	select {
	case <-s.m.done():
	default:
		return nil
	}
	c := s.m.cause()
	var remote *wire.RejectError
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local != nil && !errors.As(c, &remote) {
		return s.local
	}
	return c
}

// Close ends the session. reason (nil for an orderly close) is reported to
// the peer as a code plus its sentinel's text; idempotent.
func (s *Session) Close(reason error) error {
	s.closeOnce.Do(func() {
		if reason != nil {
			s.mu.Lock()
			s.local = fmt.Errorf("session closed: %w", reason)
			s.mu.Unlock()
			s.log.Info("closing session", "peer", s.peer.Short(), "reason", reason)
		}
		s.m.close(reason)
	})
	return nil
}

// OpenStream opens a stream to the peer and sends its StreamOpen header.
func (s *Session) OpenStream(ctx context.Context) (core.Stream, error) {
	st, err := s.m.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", s.ended(err))
	}
	if err := wire.WriteFrame(st, wire.TypeStreamOpen, wire.EncodeStreamOpen(s.version)); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("open stream: %w", s.ended(err))
	}
	return st, nil
}

// AcceptStream waits for the peer to open a stream and checks its header.
// A malformed header is a protocol violation: the whole session is closed
// (other sessions are unaffected) and the error wraps core.ErrProtocol.
func (s *Session) AcceptStream(ctx context.Context) (core.Stream, error) {
	st, err := s.m.accept(ctx)
	if err != nil {
		return nil, fmt.Errorf("accept stream: %w", s.ended(err))
	}
	hctx, cancel := context.WithTimeout(ctx, s.limits.HandshakeTimeout)
	defer cancel()
	stop := context.AfterFunc(hctx, func() { _ = st.Close() })
	payload, err := wire.Expect(st, wire.TypeStreamOpen, wire.MaxHandshakeFrame)
	if err == nil {
		err = wire.DecodeStreamOpen(payload, s.version)
	}
	if !stop() {
		err = fmt.Errorf("%w: stream header: %w", core.ErrProtocol, context.Cause(hctx))
	}
	if err != nil {
		if ctx.Err() == nil && s.Err() == nil {
			err = fmt.Errorf("%w: stream header: %w", core.ErrProtocol, err)
			_ = s.Close(err)
		}
		_ = st.Close()
		return nil, fmt.Errorf("accept stream: %w", s.ended(err))
	}
	return st, nil
}

// ReadFrame reads one application frame from st, a stream of this session,
// into buf (see wire.ReadFrame), bounded by Limits.MaxFrameSize. A malformed
// or oversized frame closes the whole session with that error, since a peer
// that sends one cannot be trusted to stay in step; io.EOF passes through.
func (s *Session) ReadFrame(st core.Stream, buf []byte) (wire.Frame, error) {
	f, err := wire.ReadFrame(st, buf, s.limits.MaxFrameSize)
	if err != nil {
		if errors.Is(err, core.ErrProtocol) || errors.Is(err, core.ErrFrameTooLarge) {
			_ = s.Close(err)
			return wire.Frame{}, fmt.Errorf("read frame from %s: %w", s.peer.Short(), err)
		}
		return wire.Frame{}, s.ended(err)
	}
	if f.Type < wire.TypeAppMin {
		err := fmt.Errorf("%w: %v frame on an application stream", core.ErrProtocol, f.Type)
		_ = s.Close(err)
		return wire.Frame{}, fmt.Errorf("read frame from %s: %w", s.peer.Short(), err)
	}
	return f, nil
}

// WriteFrame writes one application frame (type at least wire.TypeAppMin)
// to st, a stream of this session.
func (s *Session) WriteFrame(st core.Stream, t wire.Type, payload []byte) error {
	if t < wire.TypeAppMin {
		return fmt.Errorf("%w: application frame type %v", core.ErrInvalidArgument, t)
	}
	if len(payload) > s.limits.MaxFrameSize {
		return fmt.Errorf("%w: %d bytes, limit %d", core.ErrFrameTooLarge, len(payload), s.limits.MaxFrameSize)
	}
	if err := wire.WriteFrame(st, t, payload); err != nil {
		return s.ended(err)
	}
	return nil
}

// ended prefers the session's end cause over the error a stream reported.
func (s *Session) ended(err error) error {
	c := s.Err()
	if c == nil {
		// Our own Close records its reason before it closes the
		// connection, but the connection can report the close to a
		// blocked Accept or Open before the session's done channel is
		// closed: the recorded reason is the cause all the same.
		s.mu.Lock()
		c = s.local
		s.mu.Unlock()
	}
	if c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}
