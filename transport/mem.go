package transport

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// MemNetwork is an in-process network of Mem transports for tests: no
// sockets, the same handshake, authentication and limits as QUIC. Safe for
// concurrent use.
type MemNetwork struct {
	mu    sync.Mutex
	next  int
	nodes map[string]*Mem
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork { return &MemNetwork{nodes: make(map[string]*Mem)} }

// MemConfig configures a Mem transport; fields mean what they mean in
// QUICConfig.
type MemConfig struct {
	Identity   *identity.Identity
	Authorizer core.Authorizer
	Keys       KeyLookup
	Limits     Limits
	Logger     *slog.Logger

	versions versionRange // tests only
}

// Mem is a Transport on a MemNetwork. Each connection runs the real Noise
// handshake over in-memory streams; its channel binding is a random value
// both ends share, standing in for the TLS exporter.
type Mem struct {
	net  *MemNetwork
	ep   *endpoint
	addr string
	once sync.Once
}

var _ core.Transport = (*Mem)(nil)

// Listen adds a transport for id, admitting the peers auth admits.
func (n *MemNetwork) Listen(id *identity.Identity, auth core.Authorizer) (*Mem, error) {
	return n.ListenConfig(MemConfig{Identity: id, Authorizer: auth})
}

// ListenConfig adds a transport configured by cfg.
func (n *MemNetwork) ListenConfig(cfg MemConfig) (*Mem, error) {
	ep, err := newEndpoint(cfg.Identity, cfg.Authorizer, cfg.Keys, cfg.Limits, cfg.Logger, cfg.versions)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	m := &Mem{net: n, ep: ep, addr: "mem:" + strconv.Itoa(n.next)}
	n.nodes[m.addr] = m
	return m, nil
}

func (n *MemNetwork) lookup(addr string) *Mem {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[addr]
}

// Addr is the address other Mem transports dial.
func (m *Mem) Addr() string { return m.addr }

// Accept returns the next authenticated and authorized inbound session.
func (m *Mem) Accept(ctx context.Context) (core.Session, error) { return m.ep.accept(ctx) }

// Dial connects to the Mem transport at addr; see QUIC.Dial.
func (m *Mem) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	if m.ep.isClosed() {
		return nil, fmt.Errorf("dial: %w", core.ErrClosed)
	}
	target := m.net.lookup(addr)
	if target == nil {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrUnknownAddr)
	}
	binding := make([]byte, 32)
	if _, err := rand.Read(binding); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	plan, err := m.ep.plan(ctx, peer)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer plan.take()
	l := newMemLink(m.ep.limits.MaxIncomingStreams, target.ep.limits.MaxIncomingStreams)
	p, ok := target.ep.beginPending(m.addr, &memEnd{l: l, side: 1})
	if !ok {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrUnknownAddr)
	}
	go target.ep.serve(binding, p)
	s, err := m.ep.dial(ctx, &memEnd{l: l, side: 0}, binding, plan)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return s, nil
}

// Close removes the transport from its network and closes its sessions.
// Idempotent.
func (m *Mem) Close() error {
	m.once.Do(func() {
		m.net.mu.Lock()
		delete(m.net.nodes, m.addr)
		m.net.mu.Unlock()
		m.ep.close()
	})
	return nil
}

// memLink is an in-memory connection between two ends (0 dialed, 1
// accepted).
type memLink struct {
	ctx    context.Context // ends when the link closes
	cancel context.CancelFunc

	incoming [2]chan *memStream // streams waiting for each end's accept

	mu     sync.Mutex
	closed bool
	closer int   // the end that closed the link
	reason error // why it closed (nil: orderly)
	pipes  []linkPipe
}

// linkPipe is a pipe and the end that reads it.
type linkPipe struct {
	p      *pipe
	reader int
}

func newMemLink(streams0, streams1 int) *memLink {
	ctx, cancel := context.WithCancel(context.Background())
	return &memLink{
		ctx: ctx, cancel: cancel,
		incoming: [2]chan *memStream{make(chan *memStream, streams0), make(chan *memStream, streams1)},
	}
}

// memEnd is one end of a memLink.
type memEnd struct {
	l    *memLink
	side int
}

func (e *memEnd) remoteAddr() string { return "" }

func (e *memEnd) open(ctx context.Context) (core.Stream, error) {
	there, back := newPipe(), newPipe()
	e.l.mu.Lock()
	if e.l.closed {
		e.l.mu.Unlock()
		return nil, e.cause()
	}
	e.l.pipes = append(e.l.pipes, linkPipe{there, 1 - e.side}, linkPipe{back, e.side})
	e.l.mu.Unlock()
	select {
	case e.l.incoming[1-e.side] <- &memStream{r: there, w: back}:
		return &memStream{r: back, w: there}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-e.l.ctx.Done():
		return nil, e.cause()
	}
}

func (e *memEnd) accept(ctx context.Context) (core.Stream, error) {
	select {
	case s := <-e.l.incoming[e.side]:
		return s, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-e.l.ctx.Done():
		return nil, e.cause()
	}
}

func (e *memEnd) close(reason error) {
	e.l.mu.Lock()
	if e.l.closed {
		e.l.mu.Unlock()
		return
	}
	e.l.closed, e.l.closer, e.l.reason = true, e.side, reason
	pipes := e.l.pipes
	e.l.pipes = nil
	causes := [2]error{e.l.causeLocked(0), e.l.causeLocked(1)}
	e.l.mu.Unlock()
	for _, lp := range pipes {
		lp.p.breakWith(causes[lp.reader])
	}
	e.l.cancel()
}

func (e *memEnd) done() <-chan struct{}    { return e.l.ctx.Done() }
func (e *memEnd) context() context.Context { return e.l.ctx }

// cause reports why the link closed, as seen from this end.
func (e *memEnd) cause() error {
	e.l.mu.Lock()
	defer e.l.mu.Unlock()
	if !e.l.closed {
		return nil
	}
	return e.l.causeLocked(e.side)
}

// causeLocked is why the closed link ended, as seen from side.
func (l *memLink) causeLocked(side int) error {
	code, msg := closeCode(l.reason)
	switch {
	case code == 0:
		return fmt.Errorf("%w: session", core.ErrClosed)
	case l.closer == side:
		return fmt.Errorf("closed locally: %w", l.reason)
	}
	return remoteReject(wire.RejectCode(code), msg)
}
