package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/transport"
)

// runConnect measures the time from Dial to the first authenticated
// application byte, through transport.QUIC, against bare quic-go (a
// standard Listener: its Accept returns once the handshake completes), on
// loopback and again through a user-space UDP proxy that delays every
// packet by -delay each way. Samples of every kind alternate; medians are
// compared.
//
// Two exchanges are measured:
//
//   - first: the acceptor writes one byte on a stream it opens as soon as
//     it has the session, and the dialer reads it. This is how the sync
//     protocol starts (each side sends its SyncHello at once), so the
//     dialer's first authenticated byte is the acceptor's. The headline is
//     this exchange with IK (a known peer: the steady state of
//     reconnection).
//   - echo: the dialer opens a stream, writes one byte and reads its echo.
//
// Round trips to the dialer's first authenticated byte, IK: QUIC 1 (the
// dialer's Noise message leaves with its TLS Finished), Noise 1 (the
// acceptor's reply, then its first byte right behind it): 2, as bare
// quic-go's 1 + the acceptor's first byte after its Accept. Echo adds the
// dialer's byte, which cannot leave before it has checked the reply: 3
// against 2. XX (first contact) adds the initiator's last message and the
// acceptor's verdict: one more.
func runConnect(ctx context.Context, args []string) (result, error) {
	fs := newFlags("connect")
	n := fs.Int("n", 50, "samples of each kind, per path")
	delay := fs.Duration("delay", 10*time.Millisecond, "one-way delay of the proxied path (0: loopback only)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n < 1 || *delay < 0 {
		return result{}, fmt.Errorf("bad -n %d or -delay %v", *n, *delay)
	}
	a, b, err := twoIdentities()
	if err != nil {
		return result{}, err
	}
	lim := transport.Limits{MaxSessionsPerPeer: 1 << 20}
	client, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: a, Authorizer: transport.NewAllowList(b.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	// One server of each kind for each exchange.
	fedServer := func(push bool) (string, error) {
		tr, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: b, Authorizer: transport.NewAllowList(a.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
		if err != nil {
			return "", err
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go serveFed(sctx, tr, push, done)
		closers = append(closers, func() { cancel(); <-done; _ = tr.Close() })
		return tr.Addr(), nil
	}
	fedFirst, err := fedServer(true)
	if err != nil {
		return result{}, err
	}
	fedEcho, err := fedServer(false)
	if err != nil {
		return result{}, err
	}
	raw, err := newRawEcho(ctx)
	if err != nil {
		return result{}, err
	}
	closers = append(closers, raw.close)

	type path struct {
		name                                 string
		fedFirst, fedEcho, rawFirst, rawEcho string
	}
	paths := []path{{"loopback", fedFirst, fedEcho, raw.firstAddr(), raw.echoAddr()}}
	if *delay > 0 {
		p := path{name: fmt.Sprintf("rtt%dms", (2 * *delay).Milliseconds())}
		for _, x := range []struct {
			dst *string
			to  string
		}{{&p.fedFirst, fedFirst}, {&p.fedEcho, fedEcho}, {&p.rawFirst, raw.firstAddr()}, {&p.rawEcho, raw.echoAddr()}} {
			px, err := newDelayProxy(x.to, *delay)
			if err != nil {
				return result{}, err
			}
			closers = append(closers, px.close)
			*x.dst = px.addr()
		}
		paths = append(paths, p)
	}

	medians := map[string]float64{}
	for _, p := range paths {
		kinds := []struct {
			name string
			run  func() error
		}{
			{"base_first", func() error { return raw.sampleFirst(ctx, p.rawFirst) }},
			{"ik_first", func() error { return fedFirstSample(ctx, client, p.fedFirst, b.DeviceID()) }},
			{"xx_first", func() error { return fedFirstSample(ctx, client, p.fedFirst, core.DeviceID{}) }},
			{"base_echo", func() error { return raw.sampleEcho(ctx, p.rawEcho) }},
			{"ik_echo", func() error { return fedEchoSample(ctx, client, p.fedEcho, b.DeviceID()) }},
			{"xx_echo", func() error { return fedEchoSample(ctx, client, p.fedEcho, core.DeviceID{}) }},
		}
		samples := make([][]float64, len(kinds))
		for i := 0; i < *n; i++ {
			for k, kind := range kinds {
				start := time.Now()
				if err := kind.run(); err != nil {
					return result{}, fmt.Errorf("%s %s sample %d: %w", p.name, kind.name, i, err)
				}
				samples[k] = append(samples[k], float64(time.Since(start).Microseconds())/1000)
			}
			if (i+1)%10 == 0 || i+1 == *n {
				progress("%s %d/%d  median so far: first byte IK %.2f ms, XX %.2f ms, bare quic-go %.2f ms; echo IK %.2f ms, bare %.2f ms",
					p.name, i+1, *n, medianOf(samples[1]), medianOf(samples[2]), medianOf(samples[0]), medianOf(samples[4]), medianOf(samples[3]))
			}
		}
		for k, kind := range kinds {
			medians[p.name+"_"+kind.name+"_ms"] = medianOf(samples[k])
		}
	}
	extra := map[string]any{"samples": *n}
	for k, v := range medians {
		extra[k] = v
	}
	ratio := func(p, kind string) float64 {
		return medians[p+"_"+kind+"_ms"] / medians[p+"_base_"+kindExchange(kind)+"_ms"]
	}
	pass := true
	for _, p := range paths {
		for _, kind := range []string{"ik_first", "xx_first", "ik_echo", "xx_echo"} {
			extra[p.name+"_"+kind+"_ratio"] = ratio(p.name, kind)
		}
	}
	o, bl := medians["loopback_ik_first_ms"], medians["loopback_base_first_ms"]
	target := "first-byte ratio <= 1.6 on loopback"
	pass = o/bl <= 1.6
	if *delay > 0 {
		r := ratio(paths[1].name, "ik_first")
		target += fmt.Sprintf(", <= 1.3 at %v RTT (%.2f)", 2**delay, r)
		pass = pass && r <= 1.3
	}
	return result{
		Scenario: "connect", Ours: o, Baseline: bl, Unit: "ms", Ratio: o / bl,
		Target: target, Pass: pass, Extra: extra,
	}, nil
}

// kindExchange is "first" or "echo", from a kind name such as "ik_first".
func kindExchange(kind string) string {
	if len(kind) > 5 && kind[len(kind)-5:] == "first" {
		return "first"
	}
	return "echo"
}

// fedFirstSample dials and reads the one byte the acceptor sends first.
func fedFirstSample(ctx context.Context, tr *transport.QUIC, addr string, peer core.DeviceID) error {
	s, err := tr.Dial(ctx, addr, peer)
	if err != nil {
		return err
	}
	defer s.Close(nil)
	st, err := s.AcceptStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return readByte(st)
}

// fedEchoSample dials, opens a stream, sends one byte and waits for its echo.
func fedEchoSample(ctx context.Context, tr *transport.QUIC, addr string, peer core.DeviceID) error {
	s, err := tr.Dial(ctx, addr, peer)
	if err != nil {
		return err
	}
	defer s.Close(nil)
	st, err := s.OpenStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return pingByte(st)
}

func pingByte(st io.ReadWriter) error {
	if _, err := st.Write([]byte{42}); err != nil {
		return err
	}
	return readByte(st)
}

func readByte(r io.Reader) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if b[0] != 42 {
		return fmt.Errorf("read %d, want 42", b[0])
	}
	return nil
}

// serveFed serves every session of tr: with push, it opens a stream and
// writes one byte at once; otherwise it echoes one byte on every stream.
func serveFed(ctx context.Context, tr *transport.QUIC, push bool, done chan<- struct{}) {
	defer close(done)
	for {
		s, err := tr.Accept(ctx)
		if err != nil {
			return
		}
		if push {
			go func() {
				if st, err := s.OpenStream(ctx); err == nil {
					_, _ = st.Write([]byte{42})
					_ = st.CloseWrite()
				}
			}()
			continue
		}
		go func() {
			for {
				st, err := s.AcceptStream(ctx)
				if err != nil {
					return
				}
				go echoByte(st)
			}
		}()
	}
}

func echoByte(st io.ReadWriteCloser) {
	defer st.Close()
	var b [1]byte
	if _, err := io.ReadFull(st, b[:]); err == nil {
		_, _ = st.Write(b[:])
	}
}

// rawEcho is two bare quic-go servers, one sending one byte first on every
// connection and one echoing one byte per stream, and a client transport
// that dials them from one socket.
type rawEcho struct {
	first, echo *quic.Listener
	client      *quic.Transport
	cliTLS      *tls.Config
	cancel      context.CancelFunc
	done        chan struct{}
}

func newRawEcho(ctx context.Context) (*rawEcho, error) {
	srvTLS, cliTLS, err := benchTLS()
	if err != nil {
		return nil, err
	}
	first, err := quic.ListenAddr("127.0.0.1:0", srvTLS, &quic.Config{})
	if err != nil {
		return nil, err
	}
	echo, err := quic.ListenAddr("127.0.0.1:0", srvTLS, &quic.Config{})
	if err != nil {
		_ = first.Close()
		return nil, err
	}
	// One client socket for every sample, as transport.QUIC dials from its
	// one socket, so neither side pays for socket setup per sample.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		_ = first.Close()
		_ = echo.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	r := &rawEcho{first: first, echo: echo, client: &quic.Transport{Conn: udp}, cliTLS: cliTLS, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		go serveRaw(sctx, echo, echoByte)
		for {
			conn, err := first.Accept(sctx)
			if err != nil {
				return
			}
			go func() {
				if st, err := conn.OpenStreamSync(sctx); err == nil {
					_, _ = st.Write([]byte{42})
					_ = st.Close() // the write direction only
				}
			}()
		}
	}()
	return r, nil
}

func (r *rawEcho) firstAddr() string { return r.first.Addr().String() }
func (r *rawEcho) echoAddr() string  { return r.echo.Addr().String() }

func (r *rawEcho) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return r.client.Dial(ctx, ua, r.cliTLS, &quic.Config{})
}

// sampleFirst dials and reads the one byte the server sends first.
func (r *rawEcho) sampleFirst(ctx context.Context, addr string) error {
	conn, err := r.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return err
	}
	defer rawStream{st}.Close()
	return readByte(st)
}

// sampleEcho dials, opens a stream, sends one byte and waits for its echo.
func (r *rawEcho) sampleEcho(ctx context.Context, addr string) error {
	conn, err := r.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer rawStream{st}.Close()
	return pingByte(st)
}

func (r *rawEcho) close() {
	r.cancel()
	_ = r.first.Close()
	_ = r.echo.Close()
	<-r.done
	_ = r.client.Close()
	_ = r.client.Conn.Close()
}
