package dht

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"
)

// sendRate and sendBurst cap this node's outgoing DHT queries: on average
// sendRate a second, in bursts of up to sendBurst (a start is one bootstrap,
// one put and a lookup per device and epoch: a few dozen queries each).
// The library's default limiter (25 a second) is a package global shared
// by every server in the process and made lookups take a fifth of a second
// on loopback once the start had used its burst; each node gets its own.
const (
	sendRate  = 100
	sendBurst = 200
)

// node is this device's DHT node: an anacrolix/dht server on its own UDP
// socket that joins the DHT through the configured bootstrap nodes only,
// and reads and writes BEP 44 mutable items.
type node struct {
	srv       *dht.Server
	bootstrap []string
	log       *slog.Logger

	mu  sync.Mutex
	seq map[bep44.Target]int64 // last sequence number put per target
	// seenAs is the IP address each responding DHT node saw this node's
	// queries come from (BEP 42's "ip" field), by responder.
	seenAs map[string]netip.Addr
}

// maxSeenAs bounds the responders remembered for seenAs.
const maxSeenAs = 64

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
	n := &node{bootstrap: append([]string(nil), bootstrap...), log: logger, seq: map[bep44.Target]int64{}, seenAs: map[string]netip.Addr{}}
	cfg := dht.NewDefaultServerConfig()
	cfg.Conn = conn
	cfg.StartingNodes = n.startingNodes
	cfg.Logger = anacrolixLogger(logger)
	cfg.SendLimiter = rate.NewLimiter(sendRate, sendBurst)
	cfg.Store = newStore(maxStoredItems)
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

// put stores value as the BEP 44 mutable item of key (no salt) at the
// nodes closest to its target, with a sequence number above both the last
// one this node put there and the highest one those nodes hold. It fails
// when no node took it.
func (n *node) put(ctx context.Context, key ed25519.PrivateKey, value []byte) error {
	var pub [32]byte
	copy(pub[:], key.Public().(ed25519.PublicKey))
	target := bep44.MakeMutableTarget(pub, nil)
	found, op, err := n.traverse(ctx, pub)
	if err != nil {
		return fmt.Errorf("dht: put: %w", err)
	}
	n.mu.Lock()
	seq := max(n.seq[target], found.seq) + 1
	n.seq[target] = seq
	n.mu.Unlock()
	p := bep44.Put{V: value, K: &pub, Seq: seq}
	p.Sign(key)
	var wg sync.WaitGroup
	var stored atomic.Int32
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		token, _ := e.Data.(string) // the traversal keeps string tokens only
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := n.srv.Put(ctx, dht.NewAddr(e.Addr.UDP()), p, token, dht.QueryRateLimiting{})
			if err := res.ToError(); err != nil {
				n.log.Debug("dht: put refused", "node", e.Addr.String(), "err", err)
				return
			}
			stored.Add(1)
		}()
	})
	wg.Wait()
	if stored.Load() == 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("dht: put: %w", ctx.Err())
		}
		return fmt.Errorf("dht: put: %w", ErrUnreachable)
	}
	return nil
}

// get returns the value of the newest mutable item of pub (no salt) the
// DHT holds, or an error wrapping errNotFound.
func (n *node) get(ctx context.Context, pub ed25519.PublicKey) ([]byte, error) {
	var k [32]byte
	copy(k[:], pub)
	found, _, err := n.traverse(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("dht: get: %w", err)
	}
	if found.v == nil {
		return nil, fmt.Errorf("dht: get: %w", errNotFound)
	}
	var v []byte
	if err := bencode.Unmarshal(found.v, &v); err != nil {
		return nil, fmt.Errorf("dht: get: value is not a byte string: %w", errNotFound)
	}
	return v, nil
}

// item is the newest valid mutable item a traversal met.
type item struct {
	seq int64
	v   bencode.Bytes // nil: none
}

// traverse walks the DHT towards the target of pub (no salt), asking each
// node for its item, until the walk stalls or ctx ends. It returns the
// newest item whose signature verifies and the stopped traversal, whose
// Closest set holds the nodes nearest the target with their write tokens.
// The traversal has fully stopped when traverse returns (the library's
// getput.Put reads that set while queries may still write it).
func (n *node) traverse(ctx context.Context, pub [32]byte) (item, *traversal.Operation, error) {
	if err := n.join(ctx); err != nil {
		return item{}, nil, err
	}
	target := bep44.MakeMutableTarget(pub, nil)
	var mu sync.Mutex
	best := item{seq: -1}
	op := traversal.Start(traversal.OperationInput{
		Target: target,
		Alpha:  8,
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			res := n.srv.Get(qctx, dht.NewAddr(addr.UDP()), target, nil, dht.QueryRateLimiting{})
			if res.Err == nil {
				n.observe(addr.String(), res.Reply.IP.IP)
			}
			if r := res.Reply.R; r != nil && r.Seq != nil && r.K == pub && r.V != nil &&
				bep44.Verify(r.K[:], nil, *r.Seq, r.V, r.Sig[:]) {
				mu.Lock()
				if *r.Seq > best.seq {
					best = item{seq: *r.Seq, v: slices.Clone(r.V)}
				}
				mu.Unlock()
			}
			tqr := res.TraversalQueryResult(addr)
			if _, ok := tqr.ClosestData.(string); !ok {
				tqr.ResponseFrom = nil // no write token: useless for a put
			}
			return tqr
		},
		NodeFilter: n.srv.TraversalNodeFilter,
	})
	nodes, err := n.srv.TraversalStartingNodes()
	if err == nil {
		op.AddNodes(nodes)
		select {
		case <-op.Stalled():
		case <-ctx.Done():
		}
	}
	op.Stop()
	<-op.Stopped()
	if err != nil {
		return item{}, nil, err
	}
	if ctx.Err() != nil {
		return item{}, nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	if best.seq < 0 {
		best = item{}
	}
	return best, op, nil
}

// observe records that the DHT node at responder saw this node as ip.
func (n *node) observe(responder string, ip net.IP) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, known := n.seenAs[responder]; !known && len(n.seenAs) >= maxSeenAs {
		for k := range n.seenAs { // forget one at random
			delete(n.seenAs, k)
			break
		}
	}
	n.seenAs[responder] = a.Unmap()
}

// publicIP returns the public address the DHT nodes see this node at, when
// at least two of them agree (see pickPublic).
func (n *node) publicIP() (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return pickPublic(n.seenAs)
}

// pickPublic returns the address most responders saw, if at least two did
// and it is a public unicast address (not private, loopback, link-local
// or unspecified): the address of this device's NAT, or its own.
func pickPublic(seenAs map[string]netip.Addr) (netip.Addr, bool) {
	votes := map[netip.Addr]int{}
	for _, a := range seenAs {
		votes[a]++
	}
	var best netip.Addr
	for a, v := range votes {
		if v > votes[best] || (v == votes[best] && a.Less(best)) {
			best = a
		}
	}
	if votes[best] < 2 || !best.IsGlobalUnicast() || best.IsPrivate() || best.IsLoopback() || best.IsLinkLocalUnicast() {
		return netip.Addr{}, false
	}
	return best, true
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
