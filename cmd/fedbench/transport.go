package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/transport"
)

// runTransport measures the goodput of one authenticated federation stream
// (transport.QUIC) against a raw quic-go stream on loopback, interleaving
// rounds of the two so that machine noise hits both alike.
func runTransport(ctx context.Context, args []string) (result, error) {
	fs := newFlags("transport")
	sizeText := fs.String("bytes", "1GiB", "bytes sent per round on each side (units: KiB, MiB, GiB, KB, MB, GB)")
	rounds := fs.Int("rounds", 3, "rounds per side, interleaved; the median is reported")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	size, err := parseByteSize(*sizeText)
	if err != nil || size <= 0 || *rounds < 1 {
		return result{}, fmt.Errorf("bad -bytes %q or -rounds %d", *sizeText, *rounds)
	}
	fed, err := newFedPair(ctx)
	if err != nil {
		return result{}, err
	}
	defer fed.close()
	raw, err := newRawPair(ctx)
	if err != nil {
		return result{}, err
	}
	defer raw.close()
	var ours, base []float64
	type side struct {
		name string
		open func(context.Context) (io.ReadWriteCloser, func() error, error)
		out  *[]float64
	}
	for r := 1; r <= *rounds; r++ {
		order := []side{{"federation", fed.openStream, &ours}, {"raw quic-go", raw.openStream, &base}}
		if r%2 == 0 { // alternate who goes first
			order[0], order[1] = order[1], order[0]
		}
		for _, side := range order {
			mbps, err := goodput(ctx, side.open, size)
			if err != nil {
				return result{}, fmt.Errorf("%s round %d: %w", side.name, r, err)
			}
			progress("round %d/%d  %-12s %8.1f MB/s", r, *rounds, side.name, mbps)
			*side.out = append(*side.out, mbps)
		}
	}
	o, b := medianOf(ours), medianOf(base)
	ratio := o / b
	return result{
		Scenario: "transport", Ours: o, Baseline: b, Unit: "MB/s", Ratio: ratio,
		Target: "ratio >= 0.8", Pass: ratio >= 0.8,
		Extra: map[string]any{"bytes_per_round": size, "rounds": *rounds, "ours_rounds": ours, "baseline_rounds": base},
	}, nil
}

// goodput sends size bytes on a fresh stream and waits for the receiver to
// confirm it read them all; it returns MB/s (10^6 bytes per second).
func goodput(ctx context.Context, open func(context.Context) (io.ReadWriteCloser, func() error, error), size int64) (float64, error) {
	buf := make([]byte, 64<<10)
	_, _ = rand.Read(buf)
	start := time.Now()
	st, closeWrite, err := open(ctx)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		if _, err := st.Write(buf[:n]); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
		left -= n
	}
	if err := closeWrite(); err != nil {
		return 0, err
	}
	var ack [8]byte
	if _, err := io.ReadFull(st, ack[:]); err != nil {
		return 0, fmt.Errorf("read receipt: %w", err)
	}
	if got := int64(binary.BigEndian.Uint64(ack[:])); got != size {
		return 0, fmt.Errorf("receiver counted %d bytes, sent %d", got, size)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

// sink reads a stream to its end and answers with the byte count.
func sink(st io.ReadWriteCloser) {
	defer st.Close()
	n, err := io.Copy(io.Discard, st)
	if err != nil {
		return
	}
	var ack [8]byte
	binary.BigEndian.PutUint64(ack[:], uint64(n))
	_, _ = st.Write(ack[:])
}

// fedPair is a federation session between two transport.QUIC endpoints on
// loopback, with a receiver that sinks every stream the client opens.
type fedPair struct {
	server, client *transport.QUIC
	sess           core.Session
	cancel         context.CancelFunc
	done           chan struct{}
}

func newFedPair(ctx context.Context) (*fedPair, error) {
	a, b, err := twoIdentities()
	if err != nil {
		return nil, err
	}
	lim := transport.Limits{MaxSessionsPerPeer: 1 << 20}
	server, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: b, Authorizer: transport.NewAllowList(a.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		return nil, err
	}
	client, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: a, Authorizer: transport.NewAllowList(b.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		_ = server.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	p := &fedPair{server: server, client: client, cancel: cancel, done: make(chan struct{})}
	go p.serve(sctx)
	p.sess, err = client.Dial(ctx, server.Addr(), b.DeviceID())
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// serve accepts sessions and streams until ctx ends; the server's Close
// ends every session and so every stream handler.
func (p *fedPair) serve(ctx context.Context) {
	defer close(p.done)
	for {
		s, err := p.server.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				st, err := s.AcceptStream(ctx)
				if err != nil {
					return
				}
				go sink(st)
			}
		}()
	}
}

func (p *fedPair) openStream(ctx context.Context) (io.ReadWriteCloser, func() error, error) {
	st, err := p.sess.OpenStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	return st, st.CloseWrite, nil
}

func (p *fedPair) close() {
	p.cancel()
	_ = p.client.Close()
	_ = p.server.Close()
	<-p.done
}

// rawPair is a bare quic-go connection on loopback with the same kind of
// TLS configuration and no federation layer.
type rawPair struct {
	ln     *quic.Listener
	conn   *quic.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func newRawPair(ctx context.Context) (*rawPair, error) {
	srvTLS, cliTLS, err := benchTLS()
	if err != nil {
		return nil, err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, &quic.Config{})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	p := &rawPair{ln: ln, cancel: cancel, done: make(chan struct{})}
	go p.serve(sctx)
	p.conn, err = quic.DialAddr(ctx, ln.Addr().String(), cliTLS, &quic.Config{})
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *rawPair) serve(ctx context.Context) {
	defer close(p.done)
	serveRaw(ctx, p.ln, sink)
}

// serveRaw accepts raw quic-go connections on ln and hands every stream
// they open to handle, until ctx ends: the baselines' server side.
func serveRaw(ctx context.Context, ln *quic.Listener, handle func(io.ReadWriteCloser)) {
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				st, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				go handle(rawStream{st})
			}
		}()
	}
}

func (p *rawPair) openStream(ctx context.Context) (io.ReadWriteCloser, func() error, error) {
	st, err := p.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, err
	}
	return rawStream{st}, st.Close, nil
}

func (p *rawPair) close() {
	p.cancel()
	if p.conn != nil {
		_ = p.conn.CloseWithError(0, "")
	}
	_ = p.ln.Close()
	<-p.done
}

// rawStream closes both directions of a quic-go stream on Close.
type rawStream struct{ *quic.Stream }

func (r rawStream) Close() error {
	r.CancelRead(0)
	return r.Stream.Close()
}

// benchTLS returns server and client TLS configs like the transport's: an
// ephemeral self-signed certificate and the federation ALPN.
func benchTLS() (*tls.Config, *tls.Config, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, err
	}
	srv := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}, NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13}
	cli := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{wire.ALPN}, MinVersion: tls.VersionTLS13}
	return srv, cli, nil
}

func twoIdentities() (*identity.Identity, *identity.Identity, error) {
	a, err := identity.Generate(nil)
	if err != nil {
		return nil, nil, err
	}
	b, err := identity.Generate(nil)
	return a, b, err
}

// parseByteSize parses "1GiB", "512MiB", "100MB", "4096".
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	s = strings.TrimSpace(s)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return v, nil
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
