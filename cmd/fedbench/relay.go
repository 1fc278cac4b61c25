package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/server"
	"github.com/devicemesh/federation/transport"
)

// runRelay measures the goodput of one authenticated federation stream
// through a relay (an in-process relay server on loopback, the two devices
// attached over UDP, packets forwarded between them) against the same
// stream on the direct path, rounds interleaved, and the round-trip time
// of a small message on each path.
func runRelay(ctx context.Context, args []string) (result, error) {
	fs := newFlags("relay")
	sizeText := fs.String("bytes", "256MiB", "bytes sent per round on each path (units: KiB, MiB, GiB, KB, MB, GB)")
	rounds := fs.Int("rounds", 3, "rounds per path, interleaved; the median is reported")
	pings := fs.Int("pings", 300, "round trips of a 64-byte message timed on each path")
	tcp := fs.Bool("tls", false, "attach the devices to the relay over TLS on TCP instead of UDP")
	cpuprof := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	size, err := parseByteSize(*sizeText)
	if err != nil || size <= 0 || *rounds < 1 || *pings < 1 {
		return result{}, fmt.Errorf("bad -bytes %q, -rounds %d or -pings %d", *sizeText, *rounds, *pings)
	}
	reg := prometheus.NewRegistry()
	srv, err := server.New(server.Config{Metrics: reg, UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", Limits: server.Limits{ConnRate: 1 << 30, CredentialRate: 1 << 30, ConnBurst: 64 << 20, CredentialBurst: 64 << 20, QueuePackets: 4096}})
	if err != nil {
		return result{}, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(sctx) }()
	defer func() { stop(); <-served }()
	relayAddr := "quic://" + srv.UDPAddr()
	if *tcp {
		relayAddr = "tls://" + srv.TCPAddr()
	}
	p, err := newPathPair(ctx, relayAddr)
	if err != nil {
		return result{}, err
	}
	defer p.close()
	direct, err := p.client.Dial(ctx, p.server.Addr(), p.serverID)
	if err != nil {
		return result{}, fmt.Errorf("direct dial: %w", err)
	}
	relayed, err := p.client.Dial(ctx, p.relayAddr, p.serverID)
	if err != nil {
		return result{}, fmt.Errorf("dial through the relay: %w", err)
	}
	open := func(s core.Session) func(context.Context) (io.ReadWriteCloser, func() error, error) {
		return func(ctx context.Context) (io.ReadWriteCloser, func() error, error) {
			st, err := s.OpenStream(ctx)
			if err != nil {
				return nil, nil, err
			}
			if _, err := st.Write([]byte{'S'}); err != nil {
				return nil, nil, err
			}
			return st, st.CloseWrite, nil
		}
	}
	var ours, base []float64
	for r := 1; r <= *rounds; r++ {
		type side struct {
			name string
			sess core.Session
			out  *[]float64
		}
		order := []side{{"relay", relayed, &ours}, {"direct", direct, &base}}
		if r%2 == 0 {
			order[0], order[1] = order[1], order[0]
		}
		for _, s := range order {
			mbps, err := goodput(ctx, open(s.sess), size)
			if err != nil {
				return result{}, fmt.Errorf("%s round %d: %w", s.name, r, err)
			}
			progress("round %d/%d  %-7s %8.1f MB/s", r, *rounds, s.name, mbps)
			*s.out = append(*s.out, mbps)
		}
	}
	rttDirect, err := pingRTT(ctx, direct, *pings)
	if err != nil {
		return result{}, fmt.Errorf("direct ping: %w", err)
	}
	rttRelay, err := pingRTT(ctx, relayed, *pings)
	if err != nil {
		return result{}, fmt.Errorf("relay ping: %w", err)
	}
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if c := m.GetCounter(); c != nil && strings.Contains(mf.GetName(), "packets") {
					progress("relay %s%v %.0f", mf.GetName(), labels(m), c.GetValue())
				}
			}
		}
	}
	progress("packets dropped by the devices' forwarders: %d, %d", p.fwdS.Dropped(), p.fwdC.Dropped())
	lost := map[string]any{}
	for _, s := range []struct {
		name string
		sess core.Session
	}{{"direct", direct}, {"relay", relayed}} {
		if ts, ok := s.sess.(*transport.Session); ok {
			if st, ok := ts.PacketStats(); ok {
				progress("%-6s sender: %d packets sent, %d declared lost by QUIC (%.3f%%), smoothed RTT %v", s.name, st.Sent, st.Lost, 100*float64(st.Lost)/float64(max(st.Sent, 1)), st.SmoothedRTT)
				lost[s.name] = st.Lost
			}
		}
	}
	progress("round trip of 64 bytes (median): direct %v, relay %v, added %v", rttDirect, rttRelay, rttRelay-rttDirect)
	o, b := medianOf(ours), medianOf(base)
	ratio := o / b
	return result{
		Scenario: "relay", Ours: o, Baseline: b, Unit: "MB/s", Ratio: ratio,
		Target: "ratio >= 0.5", Pass: ratio >= 0.5,
		Extra: map[string]any{
			"bytes_per_round": size, "rounds": *rounds, "relay_rounds": ours, "direct_rounds": base,
			"attach":        map[bool]string{false: "udp", true: "tls"}[*tcp],
			"rtt_direct_us": rttDirect.Microseconds(), "rtt_relay_us": rttRelay.Microseconds(),
			"rtt_added_us": (rttRelay - rttDirect).Microseconds(), "packets_lost": lost,
		},
	}, nil
}

// pingRTT times n round trips of a 64-byte message on one stream and
// returns the median.
func pingRTT(ctx context.Context, s core.Session, n int) (time.Duration, error) {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if _, err := st.Write([]byte{'E'}); err != nil {
		return 0, err
	}
	msg := make([]byte, 64)
	back := make([]byte, 64)
	var rtts []time.Duration
	for range n {
		start := time.Now()
		if _, err := st.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(st, back); err != nil {
			return 0, err
		}
		rtts = append(rtts, time.Since(start))
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

// pathPair is two devices, each a transport.QUIC on loopback attached to
// the same relay: the client reaches the server directly or through the
// relay. The server sinks ('S') or echoes ('E') every stream.
type pathPair struct {
	server, client *transport.QUIC
	fwdS, fwdC     *relay.Forwarder
	serverID       core.DeviceID
	relayAddr      string
	cancel         context.CancelFunc
	done           chan struct{}
}

func newPathPair(ctx context.Context, relayAddr string) (*pathPair, error) {
	a, b, err := twoIdentities()
	if err != nil {
		return nil, err
	}
	var secret registry.Secret
	secret.Generation = 1
	_, _ = rand.Read(secret.Key[:])
	lim := transport.Limits{MaxSessionsPerPeer: 1 << 20}
	p := &pathPair{serverID: b.DeviceID(), done: make(chan struct{})}
	if p.server, err = transport.NewQUIC(ctx, transport.QUICConfig{Identity: b, Authorizer: transport.NewAllowList(a.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim}); err != nil {
		return nil, err
	}
	if p.client, err = transport.NewQUIC(ctx, transport.QUICConfig{Identity: a, Authorizer: transport.NewAllowList(b.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim}); err != nil {
		_ = p.server.Close()
		return nil, err
	}
	attach := func(tr *transport.QUIC, self core.DeviceID) (*relay.Forwarder, error) {
		f, err := relay.NewForwarder(relay.ForwarderConfig{
			Relay: relay.ClientConfig{Addr: relayAddr}, Self: self,
			Secret:       func() (registry.Secret, error) { return secret, nil },
			QueuePackets: 4096,
		})
		if err != nil {
			return nil, err
		}
		if err := tr.AddPath(f); err != nil {
			_ = f.Close()
			return nil, err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return f, f.WaitAttached(wctx)
	}
	if p.fwdS, err = attach(p.server, b.DeviceID()); err == nil {
		p.fwdC, err = attach(p.client, a.DeviceID())
	}
	sctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go p.serve(sctx)
	if err != nil {
		p.close()
		return nil, err
	}
	p.relayAddr = p.fwdC.Addrs(b.DeviceID())[0]
	return p, nil
}

func (p *pathPair) serve(ctx context.Context) {
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
				go func() {
					var mode [1]byte
					if _, err := io.ReadFull(st, mode[:]); err != nil {
						_ = st.Close()
						return
					}
					if mode[0] == 'E' {
						defer st.Close()
						_, _ = io.Copy(st, st)
						return
					}
					sink(st)
				}()
			}
		}()
	}
}

func (p *pathPair) close() {
	p.cancel()
	_ = p.client.Close()
	_ = p.server.Close()
	if p.fwdC != nil {
		_ = p.fwdC.Close()
	}
	if p.fwdS != nil {
		_ = p.fwdS.Close()
	}
	<-p.done
}

func labels(m *dto.Metric) string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName()+"="+l.GetValue())
	}
	if len(out) == 0 {
		return ""
	}
	return "{" + strings.Join(out, ",") + "}"
}
