package server

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
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/relay"
)

// ClientInfo is what a StreamHandler knows of the client: never a device
// id, only the credential the client proved (shared by the devices of one
// mesh) and its network address.
type ClientInfo struct {
	// Credential is the id of the credential the connection proved.
	Credential relay.CredentialID
	// Remote is the client's address as the relay sees it.
	Remote net.Addr
	// Conn numbers the connection on this relay instance.
	Conn uint64
}

// StreamHandler serves the streams of one kind. The kind byte has been
// read; ServeStream owns s and closes it when done. It must return once
// ctx ends (the connection closed or the relay shuts down).
type StreamHandler interface {
	ServeStream(ctx context.Context, c ClientInfo, s io.ReadWriteCloser) error
}

// StreamHandlerFunc adapts a function to a StreamHandler.
type StreamHandlerFunc func(ctx context.Context, c ClientInfo, s io.ReadWriteCloser) error

// ServeStream calls f.
func (f StreamHandlerFunc) ServeStream(ctx context.Context, c ClientInfo, s io.ReadWriteCloser) error {
	return f(ctx, c, s)
}

// Limits bound what one client can make the relay spend. Zero fields take
// the defaults of WithDefaults.
type Limits struct {
	// MaxConns bounds the client connections (default 10000).
	MaxConns int
	// MaxConnsPerCredential bounds the connections of one credential
	// (default 256).
	MaxConnsPerCredential int
	// MaxStreams bounds the open streams of one connection (default 16).
	MaxStreams int
	// MaxPacket bounds a forwarded packet (default 1452 bytes).
	MaxPacket int
	// ConnRate is the forwarded bytes per second one connection may send
	// (default 32 MiB/s); ConnBurst its burst (default 1 MiB).
	ConnRate, ConnBurst int
	// CredentialRate is the forwarded bytes per second of all the
	// connections of one credential (default 64 MiB/s); CredentialBurst its
	// burst (default 2 MiB).
	CredentialRate, CredentialBurst int
	// QueuePackets bounds the packets waiting to be sent to one client
	// (default 512): beyond, packets are dropped, as a router would.
	QueuePackets int
	// AuthTimeout bounds the credential proof (default 5s).
	AuthTimeout time.Duration
	// IdleTimeout closes a silent connection (default 30s).
	IdleTimeout time.Duration
}

// WithDefaults fills the zero fields.
func (l Limits) WithDefaults() Limits {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&l.MaxConns, 10000)
	def(&l.MaxConnsPerCredential, 256)
	def(&l.MaxStreams, 16)
	def(&l.MaxPacket, 1452)
	def(&l.ConnRate, 32<<20)
	def(&l.ConnBurst, 1<<20)
	def(&l.CredentialRate, 64<<20)
	def(&l.CredentialBurst, 2<<20)
	def(&l.QueuePackets, 512)
	if l.AuthTimeout <= 0 {
		l.AuthTimeout = 5 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 30 * time.Second
	}
	return l
}

// Config configures New.
type Config struct {
	// UDPAddr is where QUIC clients connect ("": no UDP listener).
	UDPAddr string
	// DataAddr is the UDP address of the data plane, where clients
	// attached over UDP send and receive forwarded packets without the
	// QUIC connection's framing (see package relay). "": the host of
	// UDPAddr, any port; "-": none (packets go as QUIC datagrams).
	DataAddr string
	// TCPAddr is where clients connect over TLS on TCP ("": none).
	TCPAddr string
	// TLS holds the relay's certificate. nil: a fresh self-signed one
	// (clients authenticate the relay by nothing but reachability: the
	// relay is not trusted with anything).
	TLS *tls.Config
	// NATS connects relay instances: packets for a pseudonym registered on
	// another instance are published on its subject. nil: forwarding
	// between the clients of this instance only.
	NATS *nats.Conn
	// Allow admits credentials. nil: every credential with a valid proof
	// (an open relay; limits still apply).
	Allow func(relay.CredentialID) bool
	// Handlers serve the streams of each kind byte beyond KindAuth and
	// KindForward, which the Server serves itself (KindMail: relay mail).
	Handlers map[byte]StreamHandler
	// Limits bound what clients can make the relay spend.
	Limits Limits
	// Metrics registers the relay's Prometheus metrics. nil: not exported.
	Metrics prometheus.Registerer
	// Tap, when set, receives a copy of everything the relay reads from
	// clients once their connection's TLS is removed: every datagram, every
	// stream byte, every packet from NATS, each as a 4-byte length and the
	// bytes. It is for audits (what the relay can see), not production.
	Tap io.Writer
	// Logger receives connection events: addresses, credential ids,
	// pseudonyms, never payloads. nil: discard.
	Logger *slog.Logger
}

// Server is a running relay: New listens, Serve runs until its context
// ends, then shuts down gracefully.
type Server struct {
	cfg     Config
	lim     Limits
	log     *slog.Logger
	m       *metrics
	udp     net.PacketConn
	data    net.PacketConn // the data plane (data.go); nil: none
	tcp     net.Listener
	tcpPkts *streamPackets
	trs     []*quic.Transport
	lns     []*quic.Listener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	connNo atomic.Uint64

	tapMu sync.Mutex

	mu      sync.Mutex
	conns   map[*client]struct{}
	perCred map[relay.CredentialID]*credState
	routes  map[routeKey]*client
	tokens  map[[relay.TokenSize]byte]*client
}

// tap copies b to Config.Tap.
func (s *Server) tap(b []byte) {
	if s.cfg.Tap == nil || len(b) == 0 {
		return
	}
	s.tapMu.Lock()
	defer s.tapMu.Unlock()
	_ = relay.WriteFrame(s.cfg.Tap, b)
}

// ALPN of the TLS-over-TCP carrier (the QUIC connection inside speaks
// relay.ALPN).
const tcpALPN = "fedrelay-tcp/1"

// New listens on cfg's addresses. Serve starts accepting.
func New(cfg Config) (*Server, error) {
	if cfg.UDPAddr == "" && cfg.TCPAddr == "" {
		return nil, errors.New("relay server: no listen address")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, lim: cfg.Limits.WithDefaults(), log: log,
		conns:   map[*client]struct{}{},
		perCred: map[relay.CredentialID]*credState{},
		routes:  map[routeKey]*client{},
		tokens:  map[[relay.TokenSize]byte]*client{},
	}
	s.m = newMetrics(cfg.Metrics, s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	tlsConf := cfg.TLS
	if tlsConf == nil {
		var err error
		if tlsConf, err = SelfSigned(); err != nil {
			return nil, err
		}
	}
	qtls := tlsConf.Clone()
	qtls.NextProtos = []string{relay.ALPN}
	qtls.MinVersion = tls.VersionTLS13
	qconf := s.quicConfig()
	fail := func(err error) (*Server, error) {
		s.closeListeners()
		return nil, err
	}
	if cfg.UDPAddr != "" {
		pc, err := net.ListenPacket("udp", cfg.UDPAddr)
		if err != nil {
			return fail(fmt.Errorf("relay server: listen udp %s: %w", cfg.UDPAddr, err))
		}
		s.udp = pc
		tr := &quic.Transport{Conn: pc}
		s.trs = append(s.trs, tr)
		ln, err := tr.Listen(qtls, qconf)
		if err != nil {
			return fail(fmt.Errorf("relay server: quic listen: %w", err))
		}
		s.lns = append(s.lns, ln)
		if cfg.DataAddr != "-" {
			addr := cfg.DataAddr
			if addr == "" {
				host, _, _ := net.SplitHostPort(pc.LocalAddr().String())
				addr = net.JoinHostPort(host, "0")
			}
			if s.data, err = net.ListenPacket("udp", addr); err != nil {
				return fail(fmt.Errorf("relay server: listen data %s: %w", addr, err))
			}
			relay.SetSocketBuffers(s.data)
		}
	}
	if cfg.TCPAddr != "" {
		ttls := tlsConf.Clone()
		ttls.NextProtos = []string{tcpALPN}
		ttls.MinVersion = tls.VersionTLS13
		ln, err := tls.Listen("tcp", cfg.TCPAddr, ttls)
		if err != nil {
			return fail(fmt.Errorf("relay server: listen tcp %s: %w", cfg.TCPAddr, err))
		}
		s.tcp = ln
		s.tcpPkts = newStreamPackets(ln.Addr(), 1024)
		tr := &quic.Transport{Conn: s.tcpPkts}
		s.trs = append(s.trs, tr)
		qln, err := tr.Listen(qtls, qconf)
		if err != nil {
			return fail(fmt.Errorf("relay server: quic listen over tcp: %w", err))
		}
		s.lns = append(s.lns, qln)
	}
	return s, nil
}

func (s *Server) quicConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:         true,
		MaxIncomingStreams:      int64(s.lim.MaxStreams),
		MaxIncomingUniStreams:   -1,
		HandshakeIdleTimeout:    s.lim.AuthTimeout,
		MaxIdleTimeout:          s.lim.IdleTimeout,
		KeepAlivePeriod:         s.lim.IdleTimeout / 3,
		InitialPacketSize:       ClientPacketSize,
		DisablePathMTUDiscovery: true,
	}
}

// ClientPacketSize is the size of the QUIC packets between clients and the
// relay: large enough that a forwarded packet (relay.MaxInnerPacket plus
// the pseudonym) fits in one datagram frame.
const ClientPacketSize = 1452

// UDPAddr is the UDP address clients dial ("" without a UDP listener).
func (s *Server) UDPAddr() string {
	if s.udp == nil {
		return ""
	}
	return s.udp.LocalAddr().String()
}

// TCPAddr is the TLS-over-TCP address clients dial ("" without one).
func (s *Server) TCPAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Addr().String()
}

// Serve accepts clients until ctx ends, then closes every connection,
// waits for the handlers and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	for _, ln := range s.lns {
		s.wg.Add(1)
		go s.acceptLoop(ln)
	}
	if s.tcp != nil {
		s.wg.Add(1)
		go s.acceptTCP()
	}
	if s.data != nil {
		for range dataReaders {
			s.wg.Add(1)
			go s.dataLoop()
		}
	}
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	}
	s.Close()
	return nil
}

// Close shuts the relay down: it stops listening, closes every client
// connection and waits for the goroutines. Idempotent.
func (s *Server) Close() {
	s.cancel()
	s.closeListeners()
	s.mu.Lock()
	cs := make([]*client, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.conn.CloseWithError(0, "relay shutting down")
	}
	s.wg.Wait()
	for _, tr := range s.trs {
		_ = tr.Close()
	}
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.tcpPkts != nil {
		_ = s.tcpPkts.Close()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.data != nil {
		_ = s.data.Close()
	}
}

// DataAddr is the data plane's UDP address ("" without one).
func (s *Server) DataAddr() string {
	if s.data == nil {
		return ""
	}
	return s.data.LocalAddr().String()
}

func (s *Server) acceptLoop(ln *quic.Listener) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept(s.ctx)
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) acceptTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tcpPkts.serve(s.ctx, c)
		}()
	}
}

// SelfSigned returns a TLS config with a fresh self-signed Ed25519
// certificate.
func SelfSigned() (*tls.Config, error) {
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
		MinVersion:   tls.VersionTLS13,
	}, nil
}
