// Package dhttest starts small BitTorrent mainline DHT networks on loopback
// for tests: a handful of github.com/anacrolix/dht/v2 servers on 127.0.0.1
// bootstrapped off each other, never off the public routers, whose BEP 44
// storage a test can read back in full (what an outsider running DHT nodes
// would see).
package dhttest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"
)

// Network is a small DHT on loopback.
type Network struct {
	servers []*dht.Server
	stores  []*Store
}

// Start starts n DHT servers on 127.0.0.1 that bootstrap off each other and
// closes them when the test ends.
func Start(tb testing.TB, n int) *Network {
	tb.Helper()
	nw, err := New(n)
	if err != nil {
		tb.Fatalf("dhttest: %v", err)
	}
	tb.Cleanup(nw.Close)
	return nw
}

// New starts n DHT servers on 127.0.0.1 that bootstrap off each other (for
// programs other than tests: benchmarks). Close stops them.
func New(n int) (*Network, error) {
	conns := make([]net.PacketConn, n)
	addrs := make([]dht.Addr, n)
	nw := &Network{}
	for i := range conns {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		conns[i] = c
		addrs[i] = dht.NewAddr(c.LocalAddr())
	}
	for i, c := range conns {
		others := make([]dht.Addr, 0, n-1)
		for j, a := range addrs {
			if j != i {
				others = append(others, a)
			}
		}
		st := NewStore()
		cfg := dht.NewDefaultServerConfig()
		cfg.Conn = c
		cfg.NoSecurity = true
		cfg.StartingNodes = func() ([]dht.Addr, error) { return others, nil }
		cfg.Store = st
		cfg.Logger = QuietLogger()
		cfg.SendLimiter = rate.NewLimiter(rate.Inf, 0)
		cfg.QueryResendDelay = func() time.Duration { return 200 * time.Millisecond }
		s, err := dht.NewServer(cfg)
		if err != nil {
			for _, c := range conns[i:] {
				c.Close()
			}
			nw.Close()
			return nil, fmt.Errorf("server %d: %w", i, err)
		}
		nw.servers = append(nw.servers, s)
		nw.stores = append(nw.stores, st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range nw.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.BootstrapContext(ctx)
		}()
	}
	wg.Wait()
	for i, s := range nw.servers {
		if s.NumNodes() == 0 {
			nw.Close()
			return nil, fmt.Errorf("server %d knows no node after bootstrap", i)
		}
	}
	return nw, nil
}

// QuietLogger is an anacrolix logger that drops everything (the library
// logs "transaction timed out" noise).
func QuietLogger() alog.Logger {
	l := alog.NewLogger("dht")
	l.SetHandlers(alog.DiscardHandler)
	return l.WithFilterLevel(alog.Critical)
}

// Bootstrap returns the servers' addresses ("127.0.0.1:port"), to bootstrap
// other nodes off this network.
func (nw *Network) Bootstrap() []string {
	out := make([]string, len(nw.servers))
	for i, s := range nw.servers {
		out[i] = s.Addr().String()
	}
	return out
}

// Servers returns the network's servers.
func (nw *Network) Servers() []*dht.Server { return nw.servers }

// Items returns a copy of every BEP 44 item every server of the network
// stores, one entry per server holding it.
func (nw *Network) Items() []bep44.Item {
	var out []bep44.Item
	for _, st := range nw.stores {
		out = append(out, st.Items()...)
	}
	return out
}

// StoredBytes returns, for every item every server stores, the bencoding
// of all its fields (key, salt, sequence number, signature and value):
// every byte an outsider running those servers holds about it.
func (nw *Network) StoredBytes() [][]byte {
	var out [][]byte
	for _, it := range nw.Items() {
		b, err := bencode.Marshal(map[string]any{
			"k": it.K[:], "salt": it.Salt, "seq": it.Seq, "cas": it.Cas,
			"sig": it.Sig[:], "v": it.V,
		})
		if err != nil {
			panic(fmt.Sprintf("dhttest: bencode stored item: %v", err))
		}
		out = append(out, b)
	}
	return out
}

// Close stops every server.
func (nw *Network) Close() {
	for _, s := range nw.servers {
		s.Close()
	}
}

// Store is a bep44.Store in memory that can list what it holds.
type Store struct {
	mu sync.Mutex
	m  map[bep44.Target]*bep44.Item
}

var _ bep44.Store = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{m: make(map[bep44.Target]*bep44.Item)} }

// Put stores i under its target.
func (s *Store) Put(i *bep44.Item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[i.Target()] = i
	return nil
}

// Get returns the item stored under t, or bep44.ErrItemNotFound.
func (s *Store) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.m[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return i, nil
}

// Del removes the item stored under t.
func (s *Store) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, t)
	return nil
}

// Items returns copies of the items held.
func (s *Store) Items() []bep44.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bep44.Item, 0, len(s.m))
	for _, i := range s.m {
		out = append(out, *i)
	}
	return out
}
