package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// QUICConfig configures NewQUIC.
type QUICConfig struct {
	// Identity is this device's key pair. Required.
	Identity *identity.Identity
	// Authorizer admits or refuses every peer once it has proven its key.
	// Required.
	Authorizer core.Authorizer
	// Keys finds a known peer's key so that Dial can use the IK handshake.
	// nil: the Authorizer, if it implements KeyLookup; otherwise every Dial
	// runs XX and checks the proven identity afterwards.
	Keys KeyLookup
	// ListenAddr is the UDP address to listen on and dial from.
	// "": ":0" (every interface, a free port).
	ListenAddr string
	// Conn, when set, is the packet conn to run on instead of listening on
	// ListenAddr (a socket made elsewhere, or one that filters packets in
	// tests). The transport closes it on Close.
	Conn net.PacketConn
	// Limits bound what peers can make the transport spend.
	Limits Limits
	// Logger receives connection events, never keys or payloads.
	// nil: discard.
	Logger *slog.Logger

	// versions and alpn override what this build speaks (tests only).
	versions versionRange
	alpn     string
}

// QUIC is the production Transport: one QUIC connection per peer, carrying
// many streams, authenticated by a Noise handshake bound to the connection.
// It listens and dials from a single UDP socket.
type QUIC struct {
	ep     *endpoint
	udp    net.PacketConn
	tr     *quic.Transport
	ln     *quic.Listener
	client *tls.Config
	qconf  *quic.Config
	loop   sync.WaitGroup
	once   sync.Once

	pathMu   sync.Mutex
	paths    []*extraPath // added by AddPath
	pathConf *quic.Config
}

var _ core.Transport = (*QUIC)(nil)

// NewQUIC listens on cfg.ListenAddr and starts accepting connections; they
// become sessions once authenticated. Close releases everything.
func NewQUIC(ctx context.Context, cfg QUICConfig) (*QUIC, error) {
	ep, err := newEndpoint(cfg.Identity, cfg.Authorizer, cfg.Keys, cfg.Limits, cfg.Logger, cfg.versions)
	if err != nil {
		return nil, err
	}
	alpn := cfg.alpn
	if alpn == "" {
		alpn = wire.ALPN
	}
	server, err := serverTLS(alpn)
	if err != nil {
		return nil, err
	}
	addr := cfg.ListenAddr
	if addr == "" {
		addr = ":0"
	}
	pc := cfg.Conn
	if pc == nil {
		var lc net.ListenConfig
		if pc, err = lc.ListenPacket(ctx, "udp", addr); err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
	}
	t := &QUIC{
		ep:  ep,
		udp: pc,
		// The peer is authenticated by Noise, bound to this TLS session
		// through the exporter, so the ephemeral certificate needs no
		// verification of its own.
		client: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13},
		qconf:  quicConfig(ep.limits),
	}
	t.tr = &quic.Transport{Conn: t.udp}
	t.ln, err = t.tr.Listen(server, t.qconf)
	if err != nil {
		_ = t.udp.Close()
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	t.loop.Add(1)
	go func() {
		defer t.loop.Done()
		t.acceptOn(t.ln)
	}()
	return t, nil
}

func quicConfig(l Limits) *quic.Config {
	keep := l.KeepAlive
	if keep < 0 {
		keep = 0
	}
	return &quic.Config{
		HandshakeIdleTimeout:  l.HandshakeTimeout,
		MaxIdleTimeout:        l.IdleTimeout,
		KeepAlivePeriod:       keep,
		MaxIncomingStreams:    int64(l.MaxIncomingStreams),
		MaxIncomingUniStreams: -1,
	}
}

// serverTLS builds a TLS config with a fresh self-signed Ed25519 certificate.
func serverTLS(alpn string) (*tls.Config, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * 365 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		NextProtos:   []string{alpn},
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func (t *QUIC) acceptOn(ln *quic.Listener) {
	for {
		conn, err := ln.Accept(t.ep.ctx)
		if err != nil {
			return
		}
		m := &quicMux{conn: conn}
		p, ok := t.ep.beginPending(hostOf(conn.RemoteAddr()), m)
		if !ok {
			_ = conn.CloseWithError(0, core.ErrClosed.Error())
			continue
		}
		binding, err := exporter(conn)
		if err != nil {
			t.ep.endPending(p)
			_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.RejectHandshake), core.ErrHandshake.Error())
			continue
		}
		go t.ep.serve(binding, p)
	}
}

func hostOf(a net.Addr) string {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP.String()
	}
	return a.String()
}

// exporter derives the channel binding from the connection's TLS session.
func exporter(conn *quic.Conn) ([]byte, error) {
	cs := conn.ConnectionState().TLS
	b, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: tls exporter: %w", core.ErrHandshake, err)
	}
	return b, nil
}

// Dial connects to addr and authenticates the peer; see core.Transport.
// With a non-zero peer whose key the KeyLookup knows, the IK pattern is used;
// otherwise XX. It fails with an error wrapping core.ErrUnauthorized when
// either side refuses the other, core.ErrVersionMismatch when they share no
// protocol version, core.ErrHandshake when the peer cannot prove the
// expected key, ErrBusy when the peer is at a limit.
func (t *QUIC) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	if t.ep.isClosed() {
		return nil, fmt.Errorf("dial: %w", core.ErrClosed)
	}
	if x, ra, qconf := t.pathFor(addr); x != nil {
		return t.dialVia(ctx, x, ra, qconf, addr, peer)
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	dctx, cancel := context.WithTimeout(ctx, t.ep.limits.HandshakeTimeout)
	defer cancel()
	plan, err := t.ep.plan(dctx, peer)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer plan.take()
	conn, err := t.tr.Dial(dctx, ua, t.client, t.qconf)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, mapQUICErr(err))
	}
	binding, err := exporter(conn)
	if err != nil {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.RejectHandshake), core.ErrHandshake.Error())
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s, err := t.ep.dial(dctx, &quicMux{conn: conn}, binding, plan)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return s, nil
}

// Accept returns the next authenticated and authorized inbound session.
func (t *QUIC) Accept(ctx context.Context) (core.Session, error) { return t.ep.accept(ctx) }

// Addr is the UDP address peers dial.
func (t *QUIC) Addr() string { return t.udp.LocalAddr().String() }

// Close stops listening, closes every session and waits for the transport's
// goroutines. Idempotent.
func (t *QUIC) Close() error {
	t.once.Do(func() {
		t.ep.close()
		_ = t.ln.Close()
		t.closePaths()
		t.loop.Wait()
		_ = t.tr.Close()
		t.closePathTransports()
		_ = t.udp.Close()
	})
	return nil
}

// quicMux adapts a QUIC connection.
type quicMux struct{ conn *quic.Conn }

func (m *quicMux) open(ctx context.Context) (core.Stream, error) {
	s, err := m.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, mapQUICErr(err)
	}
	return &quicStream{s: s}, nil
}

func (m *quicMux) accept(ctx context.Context) (core.Stream, error) {
	s, err := m.conn.AcceptStream(ctx)
	if err != nil {
		return nil, mapQUICErr(err)
	}
	return &quicStream{s: s}, nil
}

func (m *quicMux) close(reason error) {
	code, msg := closeCode(reason)
	_ = m.conn.CloseWithError(code, msg)
}

func (m *quicMux) remoteAddr() string       { return m.conn.RemoteAddr().String() }
func (m *quicMux) done() <-chan struct{}    { return m.conn.Context().Done() }
func (m *quicMux) context() context.Context { return m.conn.Context() }
func (m *quicMux) cause() error             { return mapQUICErr(context.Cause(m.conn.Context())) }

// closeCode maps a close reason to the QUIC application error code (0 for
// an orderly close, otherwise the wire.RejectCode) and its short text.
func closeCode(reason error) (quic.ApplicationErrorCode, string) {
	if reason == nil || errors.Is(reason, core.ErrClosed) {
		return 0, core.ErrClosed.Error()
	}
	code := wire.CodeFor(reason)
	if code == wire.RejectHandshake && !errors.Is(reason, core.ErrHandshake) {
		// A session that failed after its handshake, for a reason with no
		// code of its own: say so rather than "handshake failed".
		return quic.ApplicationErrorCode(wire.RejectSession), wire.RejectSession.String()
	}
	return quic.ApplicationErrorCode(code), reasonFor(reason)
}

// noALPN is the TLS no_application_protocol alert as a QUIC crypto error.
const noALPN = quic.TransportErrorCode(0x100 + 120)

// mapQUICErr turns QUIC connection errors into errors wrapping the
// matching sentinel.
func mapQUICErr(err error) error {
	var ae *quic.ApplicationError
	var te *quic.TransportError
	var it *quic.IdleTimeoutError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		if ae.ErrorCode == 0 {
			return fmt.Errorf("%w: %w", core.ErrClosed, err)
		}
		code := wire.RejectCode(ae.ErrorCode)
		if !ae.Remote {
			return fmt.Errorf("closed locally: %w: %s", code.Sentinel(), ae.ErrorMessage)
		}
		return &wire.RejectError{Reject: wire.Reject{Code: code, Reason: ae.ErrorMessage}}
	case errors.As(err, &te) && te.ErrorCode == noALPN:
		return fmt.Errorf("%w: no common application protocol: %w", core.ErrVersionMismatch, err)
	case errors.As(err, &it):
		return fmt.Errorf("%w: %w", core.ErrClosed, err)
	}
	return err
}

// quicStream adapts a QUIC stream to core.Stream.
type quicStream struct{ s *quic.Stream }

var _ core.Stream = (*quicStream)(nil)

func (q *quicStream) Read(p []byte) (int, error) {
	n, err := q.s.Read(p)
	return n, mapStreamErr(err)
}

func (q *quicStream) Write(p []byte) (int, error) {
	n, err := q.s.Write(p)
	return n, mapStreamErr(err)
}

// CloseWrite ends our direction; the peer reads io.EOF after the data.
func (q *quicStream) CloseWrite() error { return q.s.Close() }

// Close ends both directions.
func (q *quicStream) Close() error {
	q.s.CancelRead(0)
	return q.s.Close()
}

func mapStreamErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return mapQUICErr(err)
}
