package dht

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"
)

// sendRate caps this node's outgoing DHT queries per second (the library's
// default limiter is a package global shared by every server in the
// process; each node gets its own).
const sendRate = 50

// node is this device's DHT node: an anacrolix/dht server on its own UDP
// socket that joins the DHT through the configured bootstrap nodes only,
// and reads and writes BEP 44 mutable items.
type node struct {
	srv       *dht.Server
	bootstrap []string
	log       *slog.Logger

	mu  sync.Mutex
	seq map[bep44.Target]int64 // last sequence number put per target
}

// startNode listens on listen (UDP; "" means any port on every address) and
// starts a DHT server that bootstraps off bootstrap ("host:port" each,
// resolved at every bootstrap). It never falls back on the public routers.
func startNode(listen string, bootstrap []string, logger *slog.Logger) (*node, error) {
	if listen == "" {
		listen = ":0"
	}
	conn, err := net.ListenPacket("udp", listen)
	if err != nil {
		return nil, fmt.Errorf("dht: listen %s: %w", listen, err)
	}
	n := &node{bootstrap: append([]string(nil), bootstrap...), log: logger, seq: map[bep44.Target]int64{}}
	cfg := dht.NewDefaultServerConfig()
	cfg.Conn = conn
	cfg.StartingNodes = n.startingNodes
	cfg.Logger = anacrolixLogger(logger)
	cfg.SendLimiter = rate.NewLimiter(sendRate, sendRate)
	srv, err := dht.NewServer(cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("dht: start server: %w", err)
	}
	n.srv = srv
	return n, nil
}

// addr returns the node's UDP address.
func (n *node) addr() net.Addr { return n.srv.Addr() }

// close stops the server.
func (n *node) close() { n.srv.Close() }

// startingNodes resolves the bootstrap nodes (the server asks when its
// routing table is empty).
func (n *node) startingNodes() ([]dht.Addr, error) {
	var out []dht.Addr
	for _, hp := range n.bootstrap {
		ua, err := net.ResolveUDPAddr("udp", hp)
		if err != nil {
			n.log.Debug("dht: bootstrap node does not resolve", "node", hp, "err", err)
			continue
		}
		out = append(out, dht.NewAddr(ua))
	}
	if len(out) == 0 {
		return nil, ErrNoBootstrap
	}
	return out, nil
}

// join fills the routing table from the bootstrap nodes when it is empty.
func (n *node) join(ctx context.Context) error {
	if n.srv.NumNodes() > 0 {
		return nil
	}
	if _, err := n.srv.BootstrapContext(ctx); err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	if n.srv.NumNodes() == 0 {
		return fmt.Errorf("dht: bootstrap: %w", ErrUnreachable)
	}
	return nil
}

// put stores value as the BEP 44 mutable item of key (no salt), with a
// sequence number above both the last one this node put there and the
// highest one the DHT holds.
func (n *node) put(ctx context.Context, key ed25519.PrivateKey, value []byte) error {
	if err := n.join(ctx); err != nil {
		return err
	}
	var pub [32]byte
	copy(pub[:], key.Public().(ed25519.PublicKey))
	target := bep44.MakeMutableTarget(pub, nil)
	var used int64
	_, err := getput.Put(ctx, target, n.srv, nil, func(seen int64) bep44.Put {
		n.mu.Lock()
		used = max(seen, n.seq[target]) + 1
		n.mu.Unlock()
		p := bep44.Put{V: value, K: &pub, Seq: used}
		p.Sign(key)
		return p
	})
	if err != nil {
		return fmt.Errorf("dht: put: %w", err)
	}
	n.mu.Lock()
	n.seq[target] = max(n.seq[target], used)
	n.mu.Unlock()
	return nil
}

// get returns the value of the newest mutable item of pub (no salt) the
// DHT holds, or an error wrapping errNotFound.
func (n *node) get(ctx context.Context, pub ed25519.PublicKey) ([]byte, error) {
	if err := n.join(ctx); err != nil {
		return nil, err
	}
	var k [32]byte
	copy(k[:], pub)
	res, _, err := getput.Get(ctx, bep44.MakeMutableTarget(k, nil), n.srv, nil, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dht: get: %w", ctx.Err())
		}
		// The library reports "value not found" as a plain error once the
		// lookup has asked every node it could reach.
		return nil, fmt.Errorf("dht: get: %v: %w", err, errNotFound)
	}
	if !res.Mutable {
		return nil, fmt.Errorf("dht: get: immutable item at a mutable target: %w", errNotFound)
	}
	var v []byte
	if err := bencode.Unmarshal(res.V, &v); err != nil {
		return nil, fmt.Errorf("dht: get: value is not a byte string: %w", errNotFound)
	}
	return v, nil
}

// errNotFound reports a target the DHT holds no usable item for.
var errNotFound = errors.New("no item at target")

// anacrolixLogger routes the library's logs to logger at debug level (it
// logs "transaction timed out" and the like as errors).
func anacrolixLogger(logger *slog.Logger) alog.Logger {
	l := alog.NewLogger("dht")
	l.SetHandlers(slogHandler{logger})
	return l.WithFilterLevel(alog.Debug)
}

type slogHandler struct{ l *slog.Logger }

func (h slogHandler) Handle(r alog.Record) {
	if h.l == nil || !h.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	h.l.Debug("anacrolix/dht: "+r.Msg.String(), "level", r.Level.LogString())
}
