package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/server"
)

// run serves until ctx ends, then shuts down in order: the relay (client
// connections closed), the HTTP endpoint, the NATS connection (drained),
// the embedded NATS server.
func run(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	var ns *natsserver.Server
	var nc *nats.Conn
	var err error
	natsURL := cfg.NATS
	if natsURL == "" || cfg.NATSOnly {
		ns, err = startNATS(cfg, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		natsURL = "in-process"
		if cfg.NATSPort >= 0 {
			natsURL = ns.ClientURL()
		}
	}
	if cfg.NATSOnly {
		fmt.Fprintf(out, "READY nats=%s\n", natsURL)
		<-ctx.Done()
		log.Info("shutting down")
		return nil
	}
	opts := []nats.Option{
		nats.Name("fedrelay"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("nats disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns))
		nc, err = nats.Connect("", opts...)
	} else {
		nc, err = nats.Connect(strings.Join(splitList(cfg.NATS), ","), opts...)
	}
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handlers, err := streamHandlers(ctx, js, reg, log)
	if err != nil {
		return err
	}
	scfg := server.Config{
		UDPAddr:  cfg.UDP,
		DataAddr: cfg.DataUDP,
		TCPAddr:  cfg.TLS,
		NATS:     nc,
		Handlers: handlers,
		Metrics:  reg,
		Logger:   log,
		Limits: server.Limits{
			MaxConns:              cfg.MaxConns,
			MaxConnsPerCredential: cfg.MaxConnsPerCred,
			MaxPacket:             cfg.MaxPacket,
			ConnRate:              cfg.ConnRate,
			CredentialRate:        cfg.CredRate,
			QueuePackets:          cfg.Queue,
		},
	}
	if cfg.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
		scfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	}
	if cfg.Allow != "" {
		allowed, err := readAllow(cfg.Allow)
		if err != nil {
			return err
		}
		scfg.Allow = func(id relay.CredentialID) bool { return allowed[id] }
	}
	if cfg.Tap != "" {
		f, err := os.OpenFile(cfg.Tap, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("tap: %w", err)
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		scfg.Tap = w
	}
	srv, err := server.New(scfg)
	if err != nil {
		return err
	}

	var hs *http.Server
	httpAddr := ""
	if cfg.HTTP != "" {
		ln, err := net.Listen("tcp", cfg.HTTP)
		if err != nil {
			srv.Close()
			return fmt.Errorf("http: %w", err)
		}
		httpAddr = ln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
			if !nc.IsConnected() {
				http.Error(w, "nats: "+nc.Status().String(), http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = hs.Serve(ln) }()
	}
	fmt.Fprintf(out, "READY udp=%s data=%s tls=%s http=%s nats=%s\n", srv.UDPAddr(), srv.DataAddr(), srv.TCPAddr(), httpAddr, natsURL)
	log.Info("fedrelay serving", "udp", srv.UDPAddr(), "tls", srv.TCPAddr(), "http", httpAddr, "nats", natsURL)
	_ = srv.Serve(ctx) // returns once ctx ends, connections closed
	log.Info("shutting down")
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("nats drain", "err", err)
	}
	return nil
}

// startNATS starts the embedded NATS server with JetStream on cfg.Data.
func startNATS(cfg config, log *slog.Logger) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		ServerName:         cfg.ServerName,
		Host:               "127.0.0.1",
		Port:               cfg.NATSPort,
		DontListen:         cfg.NATSPort < 0,
		JetStream:          true,
		StoreDir:           cfg.Data,
		JetStreamMaxMemory: cfg.MaxMemory,
		NoSigs:             true,
	}
	if cfg.NATSPort == 0 {
		opts.Port = natsserver.RANDOM_PORT
	}
	if cfg.ClusterPort != 0 {
		opts.Cluster = natsserver.ClusterOpts{Name: cfg.ClusterName, Host: "127.0.0.1", Port: cfg.ClusterPort}
		for _, r := range splitList(cfg.Routes) {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server: not ready in 30s")
	}
	return ns, nil
}

// readAllow reads credential ids, one per line (# comments).
func readAllow(path string) (map[relay.CredentialID]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("allow: %w", err)
	}
	defer f.Close()
	out := map[relay.CredentialID]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out[relay.CredentialID(l)] = true
	}
	return out, sc.Err()
}

// natsLogger sends the NATS server's logs to slog.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Debugf(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Tracef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
