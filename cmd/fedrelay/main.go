// Command fedrelay is the relay daemon: it forwards the end-to-end
// encrypted packets of devices that cannot reach each other directly and
// keeps their sealed mail (package relay describes the protocol and what
// the relay can and cannot see).
//
// By default one process runs an embedded NATS server with JetStream on
// local disk (-data). With -nats nats://a,nats://b many fedrelay processes
// share an external NATS cluster instead: devices attached to different
// instances reach each other, packets routed by NATS subject. With
// -nats-only the process runs just an embedded NATS node (with -cluster-port
// and -routes, nodes of a cluster for the others to share).
//
// It serves /healthz and Prometheus /metrics on -http, shuts down
// gracefully on SIGTERM or SIGINT, and prints one line "READY udp=...
// tls=... http=... nats=..." to stdout once it serves.
//
// Flags may also come from a JSON file (-config) whose keys are the flag
// names; flags on the command line win.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parse(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "fedrelay:", err)
		os.Exit(2)
	}
	if cfg.Debug {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("fedrelay stopped", "err", err)
		os.Exit(1)
	}
}

// config is every setting, as flags or JSON keys.
type config struct {
	UDP             string `json:"udp"`
	TLS             string `json:"tls"`
	Cert            string `json:"cert"`
	Key             string `json:"key"`
	HTTP            string `json:"http"`
	NATS            string `json:"nats"`
	Data            string `json:"data"`
	NATSOnly        bool   `json:"nats-only"`
	NATSPort        int    `json:"nats-port"`
	ClusterName     string `json:"cluster-name"`
	ClusterPort     int    `json:"cluster-port"`
	Routes          string `json:"routes"`
	ServerName      string `json:"server-name"`
	Allow           string `json:"allow"`
	MaxConns        int    `json:"max-conns"`
	MaxConnsPerCred int    `json:"max-conns-per-credential"`
	MaxPacket       int    `json:"max-packet"`
	ConnRate        int    `json:"conn-rate"`
	CredRate        int    `json:"credential-rate"`
	Queue           int    `json:"queue"`
	MaxMemory       int64  `json:"nats-max-memory"`
	Debug           bool   `json:"debug"`
	Tap             string `json:"tap"`
	DataUDP         string `json:"data-udp"`
}

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("fedrelay", flag.ContinueOnError)
	conf := fs.String("config", "", "JSON file of settings (keys are the flag names)")
	fs.StringVar(&c.UDP, "udp", ":4443", `UDP (QUIC) listen address ("" for none)`)
	fs.StringVar(&c.DataUDP, "data-udp", ":4444", `UDP data-plane address: forwarded packets of clients attached over UDP ("-" for none: QUIC datagrams)`)
	fs.StringVar(&c.TLS, "tls", ":4443", `TLS-over-TCP listen address, for networks that block UDP ("" for none)`)
	fs.StringVar(&c.Cert, "cert", "", "TLS certificate file (PEM); default: self-signed")
	fs.StringVar(&c.Key, "key", "", "TLS key file (PEM)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:9477", `health and metrics listen address ("" for none)`)
	fs.StringVar(&c.NATS, "nats", "", "external NATS servers (comma-separated URLs); default: an embedded server")
	fs.StringVar(&c.Data, "data", "fedrelay-data", "directory of the embedded NATS server's JetStream store")
	fs.BoolVar(&c.NATSOnly, "nats-only", false, "run only an embedded NATS node (for a cluster that relays share)")
	fs.IntVar(&c.NATSPort, "nats-port", -1, "client port of the embedded NATS server (-1: in-process only; 0: any)")
	fs.StringVar(&c.ClusterName, "cluster-name", "fedrelay", "NATS cluster name of the embedded server")
	fs.IntVar(&c.ClusterPort, "cluster-port", 0, "NATS cluster (route) port of the embedded server (0: no cluster)")
	fs.StringVar(&c.Routes, "routes", "", "NATS route URLs of the other cluster nodes (comma-separated)")
	fs.StringVar(&c.ServerName, "server-name", "", "NATS server name (required in a cluster)")
	fs.StringVar(&c.Allow, "allow", "", "file of admitted credential ids, one per line (default: any credential with a valid proof)")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "client connections (0: default)")
	fs.IntVar(&c.MaxConnsPerCred, "max-conns-per-credential", 0, "connections per credential (0: default)")
	fs.IntVar(&c.MaxPacket, "max-packet", 0, "largest forwarded packet in bytes (0: default)")
	fs.IntVar(&c.ConnRate, "conn-rate", 0, "forwarded bytes per second per connection (0: default)")
	fs.IntVar(&c.CredRate, "credential-rate", 0, "forwarded bytes per second per credential (0: default)")
	fs.IntVar(&c.Queue, "queue", 0, "packets queued per client before dropping (0: default)")
	fs.Int64Var(&c.MaxMemory, "nats-max-memory", 0, "JetStream memory limit of the embedded server in bytes (0: NATS default)")
	fs.StringVar(&c.Tap, "tap", "", "audit file receiving a copy of every byte read from clients after TLS (see server.Config.Tap)")
	fs.BoolVar(&c.Debug, "debug", false, "debug logs (addresses, credential ids, pseudonyms; never payloads)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *conf != "" {
		b, err := os.ReadFile(*conf)
		if err != nil {
			return c, err
		}
		// Defaults first, then the file, then the flags set explicitly.
		file := c
		if err := json.Unmarshal(b, &file); err != nil {
			return c, fmt.Errorf("%s: %w", *conf, err)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		explicit := c
		c = file
		overrideExplicit(&c, explicit, set)
	}
	return c, nil
}

// overrideExplicit copies the flags set on the command line over the
// file's values.
func overrideExplicit(c *config, flags config, set map[string]bool) {
	b, _ := json.Marshal(flags)
	var all map[string]json.RawMessage
	_ = json.Unmarshal(b, &all)
	keep := map[string]json.RawMessage{}
	for k, v := range all {
		if set[k] {
			keep[k] = v
		}
	}
	b, _ = json.Marshal(keep)
	_ = json.Unmarshal(b, c)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
