package peers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"
)

// ErrNotStarted reports a network operation before Start.
var ErrNotStarted = errors.New("node not started")

// errRevoked closes the sessions of a revoked device.
var errRevoked = fmt.Errorf("%w: revoked", core.ErrUnauthorized)

// Handler runs the sync protocol on one authenticated session.
type Handler interface {
	// Serve speaks the protocol on l until the session ends or ctx is done,
	// then closes the session. It is called in a goroutine of its own that
	// the Manager owns and waits for; it must return once ctx is done.
	Serve(ctx context.Context, l *Link) error
}

// Member is a Handler's state of a joined session.
type Member interface {
	// SessionsChanged tells the session that the set of joined sessions
	// changed. It is called with the Manager's lock held: it must not
	// block nor call the Manager.
	SessionsChanged()
}

// Roster lists the devices to keep a session with.
type Roster interface {
	// Peers returns the trusted, non-revoked devices. It may block on a
	// store; it is safe for concurrent use.
	Peers(ctx context.Context) ([]core.DeviceID, error)
}

// AddrSource tells the redial loop where a device may be reached: static
// addresses, later discovered ones.
type AddrSource interface {
	// Addrs returns the addresses of id, most likely first, in a stable
	// order (a change of the list makes the loop dial at once). The loop
	// calls it on every look, so it must return quickly; safe for
	// concurrent use. The slice belongs to the caller.
	Addrs(id core.DeviceID) []string
}

// StaticAddrs is an AddrSource of fixed addresses.
type StaticAddrs map[core.DeviceID][]string

// Addrs returns the addresses listed for id.
func (s StaticAddrs) Addrs(id core.DeviceID) []string {
	return append([]string(nil), s[id]...)
}

// BookStore persists the address book (core.Store is one). Its methods
// may block on I/O and must be safe for concurrent use.
type BookStore interface {
	// Meta returns the value stored under key, or an error wrapping
	// core.ErrNotFound.
	Meta(ctx context.Context, key string) ([]byte, error)
	// SetMeta durably stores value under key.
	SetMeta(ctx context.Context, key string, value []byte) error
}

// Config builds a Manager.
type Config struct {
	// Self is this device's id.
	Self core.DeviceID
	// Handler runs the sync protocol on each session. Required.
	Handler Handler
	// Roster lists the devices the redial loop keeps sessions with.
	// Required.
	Roster Roster
	// Book persists the address book. nil: it lives in memory only.
	Book BookStore
	// Sources add addresses to the address book's, in order.
	Sources []AddrSource
	// Clock runs every timer and measures every delay when it is a
	// core.Scheduler (a core.ManualClock in tests). A Clock that runs no
	// timers (one skewed or frozen for timestamps) is not used: the
	// backoff would be measured on readings that need not move while its
	// timers run on real time. nil, or such a Clock: the system clock.
	Clock core.Clock
	// Rand draws the instance number and the backoff jitter. nil:
	// crypto/rand and math/rand/v2.
	Rand io.Reader
	// Logger receives the Manager's logs. nil: discarded.
	Logger *slog.Logger
}

// Manager dials and accepts sessions and keeps them up. It is safe for
// concurrent use. Build it with New, run it with Start, stop it with Close.
type Manager struct {
	cfg      Config
	sched    core.Scheduler
	log      *slog.Logger
	instance atomic.Uint64 // this run's instance number (set by Start)
	wake     chan struct{} // pokes the redial loop
	// idle, when set (by tests), is called each time the redial loop
	// waits, with the number of its dials in flight and the clock's
	// reading.
	idle func(dialing int, at time.Time)

	mu      sync.Mutex
	addrs   map[core.DeviceID][]string // most recent first
	active  map[core.DeviceID]int      // sessions running or being dialled
	links   map[*Link]struct{}         // sessions being served
	revoked map[core.DeviceID]bool     // cut off: refused from now on
	sources []AddrSource               // added by AddSource, after Config.Sources
	tr      core.Transport             // nil until Start
	runCtx  context.Context            // lives until the network stops
	started bool
	closed  bool
	wg      sync.WaitGroup // the loops, the sessions, the cut-offs
}

// New returns a Manager; it starts nothing.
func New(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sched, ok := cfg.Clock.(core.Scheduler)
	if !ok {
		sched = core.SystemClock{}
	}
	return &Manager{
		cfg:     cfg,
		sched:   sched,
		log:     log,
		wake:    make(chan struct{}, 1),
		addrs:   map[core.DeviceID][]string{},
		active:  map[core.DeviceID]int{},
		links:   map[*Link]struct{}{},
		revoked: map[core.DeviceID]bool{},
	}
}

// Start loads the address book, draws this run's instance number and runs
// the accept and redial loops on tr until ctx ends or Close. It does not
// close tr.
func (m *Manager) Start(ctx context.Context, tr core.Transport) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return fmt.Errorf("start: %w", core.ErrClosed)
	case m.started:
		m.mu.Unlock()
		return fmt.Errorf("start: already started")
	}
	m.started = true
	m.mu.Unlock()
	// Before the transport is published: no session without an instance.
	m.loadAddrs(ctx)
	m.instance.Store(m.newInstance())
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("start: %w", core.ErrClosed)
	}
	m.tr, m.runCtx = tr, ctx
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.acceptLoop(ctx, tr)
	}()
	go func() {
		defer m.wg.Done()
		m.redialLoop(ctx, tr)
	}()
	return nil
}

// Close refuses new sessions and waits for everything the Manager started
// to finish: the caller ends the context given to Start (and closes the
// transport) first. It is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
}

// Refresh tells the redial loop that addresses changed (an AddrSource
// calls it).
func (m *Manager) Refresh() { m.poke() }

// CutOff refuses id from now on (new sessions, dials, addresses) and
// closes every session with it, returning how many. The sessions are closed
// in a goroutine of the Manager's, so a caller holding a lock that a
// closing session needs (the replica's write lock) does not wait for them.
func (m *Manager) CutOff(id core.DeviceID) int {
	m.mu.Lock()
	m.revoked[id] = true
	delete(m.addrs, id)
	var victims []*Link
	for l := range m.links {
		if l.peer == id {
			victims = append(victims, l)
		}
	}
	closing := len(victims) > 0 && !m.closed // else the transport closes them
	if closing {
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if closing {
		go func() {
			defer m.wg.Done()
			for _, l := range victims {
				_ = l.sess.Close(errRevoked)
			}
		}()
	}
	return len(victims)
}

func (m *Manager) isRevoked(id core.DeviceID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.revoked[id]
}

// Members returns the joined sessions' members.
func (m *Manager) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.links))
	for l := range m.links {
		if l.member != nil {
			out = append(out, l.member)
		}
	}
	return out
}

// Connected returns the devices this node has a joined session with, but
// except.
func (m *Manager) Connected(except core.DeviceID) []core.DeviceID {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]core.DeviceID, 0, len(m.links))
	for l := range m.links {
		if l.member != nil && l.peer != except {
			out = append(out, l.peer)
		}
	}
	return out
}

// Link is one authenticated session the Manager serves, with what the
// Manager knows of it.
type Link struct {
	m        *Manager
	sess     core.Session
	peer     core.DeviceID
	outbound bool // this node dialled it
	relayed  bool // the session runs through a relay (relay.go)

	// Under m.mu.
	member   Member // set by Join
	instance uint64 // the peer's, from its hello (Greet)
	greeted  bool
}

// Session returns the authenticated session.
func (l *Link) Session() core.Session { return l.sess }

// Peer returns the peer's device id.
func (l *Link) Peer() core.DeviceID { return l.peer }

// Outbound reports whether this node dialled the session.
func (l *Link) Outbound() bool { return l.outbound }

// Greeted reports whether the peer's hello arrived (Greet).
func (l *Link) Greeted() bool {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	return l.greeted
}

// Join counts the session among the joined ones (it syncs) and tells every
// joined member, mb included, that the set changed.
func (l *Link) Join(mb Member) {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	l.member = mb
	l.m.changedLocked()
}

// Leave undoes Join.
func (l *Link) Leave() {
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	l.member = nil
	l.m.changedLocked()
}

// changedLocked tells every joined member that the set changed (mu held).
func (m *Manager) changedLocked() {
	for l := range m.links {
		if l.member != nil {
			l.member.SessionsChanged()
		}
	}
}

// Forget drops id from the address book (in memory: the persisted book
// changes with the next address learned).
func (m *Manager) Forget(id core.DeviceID) {
	m.mu.Lock()
	delete(m.addrs, id)
	m.mu.Unlock()
}

// Instance returns this run's instance number, announced in every hello
// (0 before Start).
func (m *Manager) Instance() uint64 { return m.instance.Load() }

// jitter returns a uniform duration in [0, n), from Config.Rand when set.
func (m *Manager) jitter(n time.Duration) time.Duration {
	if m.cfg.Rand == nil {
		return mrand.N(n)
	}
	var b [8]byte
	if _, err := io.ReadFull(m.cfg.Rand, b[:]); err != nil {
		return mrand.N(n)
	}
	return time.Duration(binary.BigEndian.Uint64(b[:]) % uint64(n))
}
