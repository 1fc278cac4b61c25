package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/fedprom"
)

// Config configures a daemon: fednode's flags and config file (JSON, the
// json names below).
type Config struct {
	// Dir is the node's data directory (required).
	Dir string `json:"dir"`
	// Name and Type describe the device to the user's other devices.
	Name string `json:"name"`
	Type string `json:"type"`
	// Listen is the node's QUIC sync address (default ":0").
	Listen string `json:"listen"`
	// KeyFile holds the store's encryption key: 32 bytes, raw or as 64 hex
	// digits. Empty: the store is not encrypted.
	KeyFile string `json:"key_file"`
	// Socket is the Unix socket of the API (default Dir/fednode.sock; "-"
	// turns it off). It is created with mode 0600: whoever can open it
	// is the device's user.
	Socket string `json:"socket"`
	// TCP, when set, also serves the API on this loopback address, with
	// Token required.
	TCP string `json:"tcp"`
	// Token is the bearer token of the TCP API; TokenFile reads it from a
	// file instead.
	Token     string `json:"token"`
	TokenFile string `json:"token_file"`
	// NATSURL, when set, serves the API on that NATS bus under NATSPrefix
	// (default "fed.<device short id>").
	NATSURL    string `json:"nats_url"`
	NATSPrefix string `json:"nats_prefix"`
	// Metrics, when set, serves Prometheus metrics on this address
	// (/metrics).
	Metrics string `json:"metrics"`
	// Collections sets a resolver per collection by strategy name
	// (conflict.ByName: "lww", "manual", ...).
	Collections map[string]string `json:"collections"`
	// Connect lists peers to dial at start ("addr" or "addr device-id").
	Connect []string `json:"connect"`
}

// Info is what a started daemon reports.
type Info struct {
	Device     string
	Addr       string
	Socket     string
	TCP        string
	NATSPrefix string
	Metrics    string
}

// String is fednode's ready line.
func (i Info) String() string {
	return fmt.Sprintf("fednode ready device=%s addr=%s socket=%s tcp=%s nats_prefix=%s metrics=%s",
		i.Device, i.Addr, orDash(i.Socket), orDash(i.TCP), orDash(i.NATSPrefix), orDash(i.Metrics))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == 32 {
		return b, nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s: want 32 bytes, raw or as 64 hex digits", path)
	}
	return k, nil
}

// Run starts a node and its API as cfg says, calls ready once everything
// listens, and serves until ctx ends; then it stops gracefully: the API
// front doors first (open streams end), then the node.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(Info)) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return fmt.Errorf("%w: dir is required", core.ErrInvalidConfig)
	}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if cfg.TCP != "" {
		if cfg.Token == "" {
			return fmt.Errorf("%w: the TCP API needs a token", core.ErrInvalidConfig)
		}
		host, _, err := net.SplitHostPort(cfg.TCP)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("%w: tcp %q: the API listens on loopback only (127.0.0.1 or [::1])", core.ErrInvalidConfig, cfg.TCP)
		}
	}
	fcfg := federation.Config{Dir: cfg.Dir, Device: federation.DeviceConfig{Name: cfg.Name, Type: cfg.Type},
		Network: federation.NetworkConfig{ListenAddr: cfg.Listen}, Logger: log}
	if cfg.KeyFile != "" {
		k, err := readKey(cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("key file: %w", err)
		}
		fcfg.Encryption.Key = k
	}
	if len(cfg.Collections) > 0 {
		fcfg.Collections = map[string]federation.Policy{}
		for name, strategy := range cfg.Collections {
			r, err := conflict.ByName(strategy)
			if err != nil {
				return fmt.Errorf("collection %q: %w", name, err)
			}
			p := federation.DefaultPolicies()[name]
			if p.Priority == 0 {
				p = federation.Policy{Priority: federation.PriorityMedium, Mode: federation.ModeImmediate}
			}
			p.Resolver = r
			fcfg.Collections[name] = p
		}
	}
	node, err := federation.New(fcfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := node.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	for _, c := range cfg.Connect {
		addr, id, _ := strings.Cut(c, " ")
		var dev federation.DeviceID
		if id != "" {
			if dev, err = federation.ParseDeviceID(id); err != nil {
				return fmt.Errorf("connect %q: %w", c, err)
			}
		}
		if err := node.Connect(ctx, addr, dev); err != nil {
			log.Warn("connect at start", "addr", addr, "err", err)
		}
	}
	opts := Options{Logger: log, Fetcher: node}
	svc := New(node, opts)
	defer svc.Close()
	info := Info{Device: node.DeviceID().String(), Addr: node.Addr()}

	var servers []*http.Server
	serve := func(l net.Listener, h http.Handler) {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true) // gRPC without TLS
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("api server", "err", err)
			}
		}()
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, srv := range servers {
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		}
	}()
	socket := cfg.Socket
	if socket == "" {
		socket = filepath.Join(cfg.Dir, "fednode.sock")
	}
	if socket != "-" {
		_ = os.Remove(socket) // a stale socket of an earlier run; the node's Dir lock keeps two daemons apart
		l, err := net.Listen("unix", socket)
		if err != nil {
			return fmt.Errorf("api socket: %w", err)
		}
		if err := os.Chmod(socket, 0o600); err != nil {
			_ = l.Close()
			return fmt.Errorf("api socket: %w", err)
		}
		path, h := Handler(svc, "")
		mux := http.NewServeMux()
		mux.Handle(path, h)
		serve(l, mux)
		info.Socket = socket
	}
	if cfg.TCP != "" {
		l, err := net.Listen("tcp", cfg.TCP)
		if err != nil {
			return fmt.Errorf("api tcp: %w", err)
		}
		path, h := Handler(svc, cfg.Token)
		mux := http.NewServeMux()
		mux.Handle(path, h)
		serve(l, mux)
		info.TCP = l.Addr().String()
	}
	if cfg.Metrics != "" {
		l, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(fedprom.New(node, fedprom.Options{Namespace: "fednode"}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		serve(l, mux)
		info.Metrics = l.Addr().String()
	}
	if cfg.NATSURL != "" {
		prefix := cfg.NATSPrefix
		if prefix == "" {
			prefix = "fed." + node.DeviceID().Short()
		}
		nc, err := nats.Connect(cfg.NATSURL, nats.Name("fednode "+node.DeviceID().Short()), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("nats: %w", err)
		}
		defer nc.Close()
		ns, err := ServeNATS(nc, prefix, svc)
		if err != nil {
			return err
		}
		defer ns.Close()
		info.NATSPrefix = prefix
	}
	if ready != nil {
		ready(info)
	}
	<-ctx.Done()
	log.Info("fednode stopping")
	// svc.Close (deferred) ends Subscribe streams before the HTTP servers
	// wait for their handlers; run it first.
	svc.Close()
	return nil
}
