package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/transport"
)

// runConnect measures the time from Dial to the first authenticated
// application byte back (a one-byte echo on a new stream), through
// transport.QUIC, against a bare quic-go handshake plus the same one-byte
// round trip. Samples of the two alternate; medians are compared. The
// headline is the IK handshake (a known peer: the steady state of
// reconnection); XX (first contact) is reported in Extra.
func runConnect(ctx context.Context, args []string) (result, error) {
	fs := newFlags("connect")
	n := fs.Int("n", 50, "samples of each kind")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n < 1 {
		return result{}, fmt.Errorf("bad -n %d", *n)
	}
	a, b, err := twoIdentities()
	if err != nil {
		return result{}, err
	}
	lim := transport.Limits{MaxSessionsPerPeer: 1 << 20}
	server, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: b, Authorizer: transport.NewAllowList(a.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		return result{}, err
	}
	defer server.Close()
	client, err := transport.NewQUIC(ctx, transport.QUICConfig{Identity: a, Authorizer: transport.NewAllowList(b.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		return result{}, err
	}
	defer client.Close()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go serveEcho(sctx, server, done)
	defer func() { cancel(); <-done }()

	raw, err := newRawEcho(ctx)
	if err != nil {
		return result{}, err
	}
	defer raw.close()

	var ik, xx, base []float64
	for i := 0; i < *n; i++ {
		for _, k := range []struct {
			out *[]float64
			run func() error
		}{
			{&base, func() error { return raw.sample(ctx) }},
			{&ik, func() error { return fedSample(ctx, client, server.Addr(), b.DeviceID()) }},
			{&xx, func() error { return fedSample(ctx, client, server.Addr(), core.DeviceID{}) }},
		} {
			start := time.Now()
			if err := k.run(); err != nil {
				return result{}, fmt.Errorf("sample %d: %w", i, err)
			}
			*k.out = append(*k.out, float64(time.Since(start).Microseconds())/1000)
		}
		if (i+1)%10 == 0 || i+1 == *n {
			progress("%d/%d  median so far: IK %.2f ms, XX %.2f ms, bare quic-go %.2f ms", i+1, *n, medianOf(ik), medianOf(xx), medianOf(base))
		}
	}
	o, bl := medianOf(ik), medianOf(base)
	ratio := o / bl
	return result{
		Scenario: "connect", Ours: o, Baseline: bl, Unit: "ms", Ratio: ratio,
		Target: "ratio <= 2", Pass: ratio <= 2,
		Extra: map[string]any{"samples": *n, "xx_ms": medianOf(xx), "xx_ratio": medianOf(xx) / bl},
	}, nil
}

// fedSample dials, opens a stream, sends one byte and waits for its echo.
func fedSample(ctx context.Context, tr *transport.QUIC, addr string, peer core.DeviceID) error {
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
	var b [1]byte
	if _, err := io.ReadFull(st, b[:]); err != nil {
		return err
	}
	if b[0] != 42 {
		return fmt.Errorf("echo returned %d", b[0])
	}
	return nil
}

// serveEcho echoes one byte on every stream of every session.
func serveEcho(ctx context.Context, tr *transport.QUIC, done chan<- struct{}) {
	defer close(done)
	for {
		s, err := tr.Accept(ctx)
		if err != nil {
			return
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

// rawEcho is a bare quic-go server echoing one byte per stream, and a
// client transport that dials it from one socket.
type rawEcho struct {
	ln     *quic.Listener
	client *quic.Transport
	dialTo func(ctx context.Context) (*quic.Conn, error)
	cancel context.CancelFunc
	done   chan struct{}
}

func newRawEcho(ctx context.Context) (*rawEcho, error) {
	srvTLS, cliTLS, err := benchTLS()
	if err != nil {
		return nil, err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, &quic.Config{})
	if err != nil {
		return nil, err
	}
	// One client socket for every sample, as transport.QUIC dials from its
	// one socket, so neither side pays for socket setup per sample.
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	r := &rawEcho{ln: ln, client: &quic.Transport{Conn: udp}, cancel: cancel, done: make(chan struct{})}
	go r.serve(sctx)
	r.dialTo = func(ctx context.Context) (*quic.Conn, error) {
		return r.client.Dial(ctx, ln.Addr(), cliTLS, &quic.Config{})
	}
	return r, nil
}

func (r *rawEcho) serve(ctx context.Context) {
	defer close(r.done)
	serveRaw(ctx, r.ln, echoByte)
}

// sample dials, opens a stream, sends one byte and waits for its echo.
func (r *rawEcho) sample(ctx context.Context) error {
	conn, err := r.dialTo(ctx)
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
	_ = r.ln.Close()
	<-r.done
	_ = r.client.Close()
	_ = r.client.Conn.Close()
}
