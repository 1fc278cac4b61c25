// Command fednode runs one device of a devicemesh federation as its own
// process and serves its API (api/federation/v1/federation.proto) to hosts
// written in any language: Connect (gRPC, gRPC-Web, JSON over HTTP) on a
// Unix socket, optionally on loopback TCP with a bearer token, and
// optionally on a NATS bus. It stops gracefully on SIGTERM or SIGINT.
//
//	fednode -dir ~/.local/share/fednode -name "Anna's laptop" -type laptop
//	fednode -config fednode.json
//
// Flags override the config file (JSON; see daemon.Config for the names).
// Once everything listens, fednode prints one line to stdout:
//
//	fednode ready device=<id> addr=<quic addr> socket=<path> tcp=<addr> nats_prefix=<prefix> metrics=<addr>
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/devicemesh/federation/internal/daemon"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fednode:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string) error {
	fs := flag.NewFlagSet("fednode", flag.ContinueOnError)
	var (
		configFile  = fs.String("config", "", "JSON config file (flags given override it)")
		dir         = fs.String("dir", "", "data directory (required)")
		name        = fs.String("name", "", "device name shown on the user's other devices")
		typ         = fs.String("type", "", "device type (phone, laptop, tablet, desktop, server, ...)")
		listen      = fs.String("listen", "", "QUIC sync address (default :0)")
		keyFile     = fs.String("key-file", "", "file with the 32-byte store encryption key (raw or hex)")
		socket      = fs.String("socket", "", "API Unix socket (default DIR/fednode.sock; - for none)")
		tcp         = fs.String("tcp", "", "also serve the API on this loopback TCP address (needs a token)")
		token       = fs.String("token", "", "bearer token of the TCP API")
		tokenFile   = fs.String("token-file", "", "file holding the bearer token")
		natsURL     = fs.String("nats", "", "NATS URL: also serve the API on this bus")
		natsPrefix  = fs.String("nats-prefix", "", "NATS subject prefix (default fed.<device short id>)")
		metrics     = fs.String("metrics", "", "serve Prometheus metrics on this address")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		collections stringList
		connects    stringList
	)
	fs.Var(&collections, "collection", "NAME=STRATEGY resolver of a collection (lww, manual, ...); repeatable")
	fs.Var(&connects, "connect", "ADDR[ DEVICE-ID] of a peer to dial at start; repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg daemon.Config
	if *configFile != "" {
		b, err := os.ReadFile(*configFile)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("config %s: %w", *configFile, err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	over := func(flagName string, dst *string, v string) {
		if set[flagName] {
			*dst = v
		}
	}
	over("dir", &cfg.Dir, *dir)
	over("name", &cfg.Name, *name)
	over("type", &cfg.Type, *typ)
	over("listen", &cfg.Listen, *listen)
	over("key-file", &cfg.KeyFile, *keyFile)
	over("socket", &cfg.Socket, *socket)
	over("tcp", &cfg.TCP, *tcp)
	over("token", &cfg.Token, *token)
	over("token-file", &cfg.TokenFile, *tokenFile)
	over("nats", &cfg.NATSURL, *natsURL)
	over("nats-prefix", &cfg.NATSPrefix, *natsPrefix)
	over("metrics", &cfg.Metrics, *metrics)
	for _, c := range collections {
		n, s, ok := strings.Cut(c, "=")
		if !ok {
			return fmt.Errorf("-collection %q: want NAME=STRATEGY", c)
		}
		if cfg.Collections == nil {
			cfg.Collections = map[string]string{}
		}
		cfg.Collections[n] = s
	}
	cfg.Connect = append(cfg.Connect, connects...)

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return daemon.Run(ctx, cfg, log, func(i daemon.Info) { fmt.Println(i.String()) })
}
