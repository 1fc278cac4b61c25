package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
)

// tcpALPN is the ALPN of the TLS-over-TCP carrier.
const tcpALPN = "fedrelay-tcp/1"

// clientPacketSize is the size of the QUIC packets between a client and
// the relay (the relay's server.ClientPacketSize).
const clientPacketSize = 1452

// ClientConfig configures Dial.
type ClientConfig struct {
	// Addr is the relay: "quic://host:port" (UDP) or "tls://host:port"
	// (TLS over TCP). A bare "host:port" means QUIC.
	Addr string
	// Credential authenticates the client (NewCredential).
	Credential Credential
	// TLS verifies the relay's certificate. nil: any certificate (the
	// relay is trusted with nothing; see the package doc).
	TLS *tls.Config
	// Timeout bounds the connection and the auth (default 5s).
	Timeout time.Duration
	// Logger receives connection events. nil: discard.
	Logger *slog.Logger
}

// Client is one authenticated connection to a relay.
type Client struct {
	conn *quic.Conn
	tr   *quic.Transport
	pc   net.PacketConn
	udp  bool   // attached over UDP (not TLS over TCP)
	host string // the relay's host
}

// Dial connects to the relay and authenticates.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	scheme, hostport, ok := strings.Cut(cfg.Addr, "://")
	if !ok {
		scheme, hostport = "quic", cfg.Addr
	}
	base := cfg.TLS
	if base == nil {
		base = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the relay is not trusted; see the package doc
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("relay %q: %w", cfg.Addr, err)
	}
	qtls := base.Clone()
	qtls.NextProtos = []string{ALPN}
	qtls.MinVersion = tls.VersionTLS13
	if qtls.ServerName == "" {
		qtls.ServerName = host
	}
	qconf := &quic.Config{
		EnableDatagrams:         true,
		HandshakeIdleTimeout:    timeout,
		MaxIdleTimeout:          15 * time.Second,
		KeepAlivePeriod:         5 * time.Second,
		InitialPacketSize:       clientPacketSize,
		DisablePathMTUDiscovery: true,
	}
	var pc net.PacketConn
	var raddr net.Addr
	switch scheme {
	case "quic", "udp":
		ua, err := net.ResolveUDPAddr("udp", hostport)
		if err != nil {
			return nil, fmt.Errorf("relay %q: %w", cfg.Addr, err)
		}
		if pc, err = net.ListenPacket("udp", ":0"); err != nil {
			return nil, fmt.Errorf("relay: listen: %w", err)
		}
		raddr = ua
	case "tls", "tcp":
		ttls := base.Clone()
		ttls.NextProtos = []string{tcpALPN}
		ttls.MinVersion = tls.VersionTLS13
		if ttls.ServerName == "" {
			ttls.ServerName = host
		}
		d := tls.Dialer{Config: ttls}
		c, err := d.DialContext(dctx, "tcp", hostport)
		if err != nil {
			return nil, fmt.Errorf("relay %q: %w", cfg.Addr, err)
		}
		cc := newCarried(c)
		pc, raddr = cc, cc.remote
	default:
		return nil, fmt.Errorf("%w: relay scheme %q", ErrBadAddr, scheme)
	}
	tr := &quic.Transport{Conn: pc}
	conn, err := tr.Dial(dctx, raddr, qtls, qconf)
	if err != nil {
		_ = tr.Close()
		_ = pc.Close()
		return nil, fmt.Errorf("relay %q: %w", cfg.Addr, err)
	}
	c := &Client{conn: conn, tr: tr, pc: pc, udp: scheme == "quic" || scheme == "udp", host: host}
	if err := c.auth(dctx, cfg.Credential); err != nil {
		var ae *quic.ApplicationError
		if errors.As(err, &ae) && ae.Remote && ae.ErrorCode != 0 {
			// The relay hung up before its reply was read: the code says why.
			err = StatusErr(byte(ae.ErrorCode), ae.ErrorMessage)
		}
		_ = c.Close()
		return nil, fmt.Errorf("relay %q: %w", cfg.Addr, err)
	}
	return c, nil
}

func (c *Client) auth(ctx context.Context, cred Credential) error {
	if cred.priv == nil {
		return fmt.Errorf("%w: no credential", ErrUnauthorized)
	}
	cs := c.conn.ConnectionState().TLS
	binding, err := cs.ExportKeyingMaterial(ExporterLabel, nil, 32)
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	st, err := c.OpenStream(ctx, KindAuth)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { _ = st.Close() })
	defer stop()
	if err := WriteFrame(st, AuthHello{Public: cred.Public(), Sig: cred.Sign(binding)}.Marshal()); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return readStatus(st)
}

// readStatus reads a status byte and, for an auth reply, its reason.
func readStatus(r io.Reader) error {
	var s [1]byte
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return fmt.Errorf("relay reply: %w", err)
	}
	if s[0] == StatusOK {
		return nil
	}
	reason, _ := ReadFrame(r, 1024)
	return StatusErr(s[0], string(reason))
}

// OpenStream opens a stream of kind (its first byte is written).
func (c *Client) OpenStream(ctx context.Context, kind byte) (io.ReadWriteCloser, error) {
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("relay stream: %w", err)
	}
	if _, err := st.Write([]byte{kind}); err != nil {
		st.CancelRead(0)
		_ = st.Close()
		return nil, fmt.Errorf("relay stream: %w", err)
	}
	return &clientStream{st}, nil
}

type clientStream struct{ s *quic.Stream }

func (s *clientStream) Read(p []byte) (int, error)  { return s.s.Read(p) }
func (s *clientStream) Write(p []byte) (int, error) { return s.s.Write(p) }

// Close ends both directions.
func (s *clientStream) Close() error {
	s.s.CancelRead(0)
	return s.s.Close()
}

// CloseWrite ends the client's direction only.
func (s *clientStream) CloseWrite() error { return s.s.Close() }

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.conn.Context().Done() }

// Close ends the connection.
func (c *Client) Close() error {
	_ = c.conn.CloseWithError(0, "bye")
	_ = c.tr.Close()
	return c.pc.Close()
}

// registration is a registered pseudonym: the forwarding stream (closing
// it unregisters) and the data-plane token and port the relay issued (port
// 0: no data plane).
type registration struct {
	st    io.Closer
	token [TokenSize]byte
	port  uint16
}

// register opens a forwarding stream for p; the registration lasts while
// the stream is open.
func (c *Client) register(ctx context.Context, p PseudonymOf) (registration, error) {
	st, err := c.OpenStream(ctx, KindForward)
	if err != nil {
		return registration{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = st.Close() })
	defer stop()
	fail := func(err error) (registration, error) {
		_ = st.Close()
		return registration{}, fmt.Errorf("register: %w", err)
	}
	if err := WriteFrame(st, p[:]); err != nil {
		return fail(err)
	}
	var s [1]byte
	if _, err := io.ReadFull(st, s[:]); err != nil {
		return fail(err)
	}
	if err := StatusErr(s[0], "register"); err != nil {
		return fail(err)
	}
	var rest [TokenSize + 2]byte
	if _, err := io.ReadFull(st, rest[:]); err != nil {
		return fail(err)
	}
	r := registration{st: st, port: binary.BigEndian.Uint16(rest[TokenSize:])}
	copy(r.token[:], rest[:TokenSize])
	return r, nil
}

// sendPacket sends one forwarded packet to dst; a packet too large for a
// datagram is dropped, as a link drops one above its MTU.
func (c *Client) sendPacket(dst PseudonymOf, p []byte) error {
	b := make([]byte, PseudonymSize+len(p))
	copy(b, dst[:])
	copy(b[PseudonymSize:], p)
	err := c.conn.SendDatagram(b)
	var tl *quic.DatagramTooLargeError
	if errors.As(err, &tl) {
		return nil
	}
	return err
}

// carried is a TLS connection as the single-peer packet conn of a QUIC
// transport.
type carried struct {
	c      net.Conn
	remote carriedAddr
	w      *PacketWriter
}

type carriedAddr string

func (a carriedAddr) Network() string { return "tcp-carried" }
func (a carriedAddr) String() string  { return string(a) }

func newCarried(c net.Conn) *carried {
	// Blocking when full: this connection carries only this client's
	// packets, and TCP pushes back.
	w := NewPacketWriter(c, nil, func(error) { _ = c.Close() }, true)
	return &carried{c: c, remote: carriedAddr(c.RemoteAddr().String()), w: w}
}

func (c *carried) ReadFrom(b []byte) (int, net.Addr, error) {
	if len(b) < MaxCarriedPacket {
		buf := make([]byte, MaxCarriedPacket)
		n, err := ReadPacket(c.c, buf)
		return copy(b, buf[:n]), c.remote, err
	}
	n, err := ReadPacket(c.c, b)
	return n, c.remote, err
}

func (c *carried) WriteTo(b []byte, _ net.Addr) (int, error) {
	if err := c.w.WritePacket(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *carried) Close() error {
	c.w.Flush(100 * time.Millisecond) // the connection's last packets (CONNECTION_CLOSE)
	c.w.Close()
	return c.c.Close()
}
func (c *carried) LocalAddr() net.Addr                { return c.c.LocalAddr() }
func (c *carried) SetDeadline(t time.Time) error      { return c.c.SetReadDeadline(t) }
func (c *carried) SetReadDeadline(t time.Time) error  { return c.c.SetReadDeadline(t) }
func (c *carried) SetWriteDeadline(_ time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer accept quic-go's requests: a TCP
// connection's buffers are the kernel's business.
func (c *carried) SetReadBuffer(int) error  { return nil }
func (c *carried) SetWriteBuffer(int) error { return nil }
