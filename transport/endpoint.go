package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
)

// endpoint is what the QUIC and in-memory transports share: the handshake
// on the first stream of every connection, admission limits, the registry
// of live sessions and the queue of sessions waiting for Accept.
type endpoint struct {
	ident    *identity.Identity
	noise    *noiseKeys // ident's, derived once
	auth     core.Authorizer
	keys     KeyLookup
	limits   Limits
	log      *slog.Logger
	versions versionRange

	ctx    context.Context // ends when the transport closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // handshake goroutines

	accepted chan *Session

	mu          sync.Mutex
	closed      bool
	sessions    map[*Session]struct{}
	perPeer     map[core.DeviceID]int
	pending     map[*pendingConn]struct{} // unauthenticated inbound connections
	pendingHost map[string]int
	pendingSeq  uint64 // pending connections admitted so far
	born        uint64 // handshakes admitted to a per-peer slot so far

	// beforeRegister, when set (tests only), runs after a handshake
	// succeeded and before its session is registered.
	beforeRegister func()
}

func newEndpoint(ident *identity.Identity, auth core.Authorizer, keys KeyLookup, limits Limits, log *slog.Logger, v versionRange) (*endpoint, error) {
	if ident == nil {
		return nil, fmt.Errorf("%w: transport needs an Identity", core.ErrInvalidConfig)
	}
	if auth == nil {
		return nil, fmt.Errorf("%w: transport needs an Authorizer", core.ErrInvalidConfig)
	}
	if keys == nil {
		keys, _ = auth.(KeyLookup)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if v == (versionRange{}) {
		v = defaultVersions
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &endpoint{
		ident: ident, noise: newNoiseKeys(ident), auth: auth, keys: keys, limits: limits.WithDefaults(), log: log, versions: v,
		ctx: ctx, cancel: cancel,
		accepted:    make(chan *Session),
		sessions:    make(map[*Session]struct{}),
		perPeer:     make(map[core.DeviceID]int),
		pending:     make(map[*pendingConn]struct{}),
		pendingHost: make(map[string]int),
	}, nil
}

// pendingConn is one inbound connection whose peer has not proven an
// identity the Authorizer admits yet. It holds a slot of
// Limits.MaxPendingHandshakes and one of its host's
// Limits.MaxPendingPerHost until it is authorized, fails or is evicted.
type pendingConn struct {
	host string
	seq  uint64 // admission order: lower is older
	m    mux
	held bool // counted in the endpoint's pool (under endpoint.mu)
}

// errEvicted closes a pending connection whose slot a newer one took.
var errEvicted = fmt.Errorf("%w: unauthenticated connection evicted by newer ones", wire.ErrBusy)

// beginPending admits one more unauthenticated inbound connection m from
// host. At a cap, the newcomer is not refused: the oldest pending
// connection of its own host (at the per-host cap), or else of the host
// holding the most pending connections (at the global cap), is closed to
// make room. So connections that stay silent cannot lock anyone out: a
// flood from a few addresses only ever evicts its own connections, and a
// device connecting from another address keeps its slot for as long as it
// takes to prove a key the Authorizer admits, when it leaves the pool (see
// admission.authorize). It reports false only once the endpoint is closed.
func (e *endpoint) beginPending(host string, m mux) (*pendingConn, bool) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, false
	}
	var victim *pendingConn
	switch {
	case e.pendingHost[host] >= e.limits.MaxPendingPerHost:
		victim = e.oldestPendingLocked(host)
	case len(e.pending) >= e.limits.MaxPendingHandshakes:
		victim = e.oldestPendingLocked(e.busiestHostLocked())
	}
	if victim != nil {
		e.releaseLocked(victim)
	}
	e.pendingSeq++
	p := &pendingConn{host: host, seq: e.pendingSeq, m: m, held: true}
	e.pending[p] = struct{}{}
	e.pendingHost[host]++
	e.wg.Add(1) // under mu, so close cannot be waiting yet
	e.mu.Unlock()
	if victim != nil {
		e.log.Debug("evicting an unauthenticated connection", "host", victim.host)
		victim.m.close(errEvicted)
	}
	return p, true
}

// oldestPendingLocked is host's oldest pending connection, nil if none.
func (e *endpoint) oldestPendingLocked(host string) *pendingConn {
	var old *pendingConn
	for p := range e.pending {
		if p.host == host && (old == nil || p.seq < old.seq) {
			old = p
		}
	}
	return old
}

// busiestHostLocked is the host with the most pending connections; of
// equals, the one whose oldest connection is oldest.
func (e *endpoint) busiestHostLocked() string {
	var best *pendingConn
	for p := range e.pending {
		if best == nil {
			best = p
			continue
		}
		n, bn := e.pendingHost[p.host], e.pendingHost[best.host]
		if n > bn || (n == bn && p.seq < best.seq) {
			best = p
		}
	}
	if best == nil {
		return ""
	}
	return best.host
}

// endPending gives back the pending slot, if still held, and ends the
// serving goroutine's wg count.
func (e *endpoint) endPending(p *pendingConn) {
	e.releasePending(p)
	e.wg.Done()
}

// releasePending gives back the pending slot only; idempotent, and a no-op
// for a nil p (an outbound handshake).
func (e *endpoint) releasePending(p *pendingConn) {
	if p == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.releaseLocked(p)
}

func (e *endpoint) releaseLocked(p *pendingConn) {
	if !p.held {
		return
	}
	p.held = false
	delete(e.pending, p)
	if e.pendingHost[p.host]--; e.pendingHost[p.host] <= 0 {
		delete(e.pendingHost, p.host)
	}
}

// admission is one handshake's claim on a per-peer session slot.
type admission struct {
	e       *endpoint
	pending *pendingConn // the inbound connection's pending slot; nil outbound
	id      core.DeviceID
	ok      bool
	born    uint64 // admission order in the endpoint: lower is older
}

// errReplaced closes a session that a newer one of the same device took
// the place of.
var errReplaced = fmt.Errorf("%w: replaced by a newer session of the same device", core.ErrClosed)

// authorize asks the Authorizer, then takes a per-peer slot. When the
// device holds every slot already, its oldest established session gives
// its slot up and is closed: the device just proved its key, and a device
// that restarted after a crash leaves sessions behind that only an idle
// timeout would otherwise end, locking it out until then. Only slots held
// by handshakes still in progress make the device busy.
//
// An admitted inbound handshake leaves the pool of pending connections:
// from here on the per-peer cap bounds it, so unauthenticated connections
// can never crowd out a device that has proven a key the Authorizer admits.
func (a *admission) authorize(ctx context.Context, id core.DeviceID, key core.PublicKey) error {
	if err := a.e.auth.Authorize(ctx, id, key); err != nil {
		return err
	}
	a.e.mu.Lock()
	if a.e.closed {
		a.e.mu.Unlock()
		return fmt.Errorf("%w: transport", core.ErrClosed)
	}
	var victim *Session
	if a.e.perPeer[id] >= a.e.limits.MaxSessionsPerPeer {
		for s := range a.e.sessions {
			if s.peer == id && (victim == nil || s.born < victim.born) {
				victim = s
			}
		}
		if victim == nil {
			n := a.e.perPeer[id]
			a.e.mu.Unlock()
			return fmt.Errorf("%w: %d sessions with %s already", wire.ErrBusy, n, id.Short())
		}
		delete(a.e.sessions, victim)
		a.e.dropPeerLocked(id)
	}
	a.e.perPeer[id]++
	a.e.born++
	a.id, a.ok, a.born = id, true, a.e.born
	if a.pending != nil {
		a.e.releaseLocked(a.pending)
	}
	a.e.mu.Unlock()
	if victim != nil {
		a.e.log.Info("replacing the oldest session of a device at its session cap", "peer", id.Short())
		_ = victim.Close(errReplaced)
	}
	return nil
}

// release gives the slot back when the handshake failed after authorize.
func (a *admission) release() {
	if !a.ok {
		return
	}
	a.e.mu.Lock()
	defer a.e.mu.Unlock()
	a.e.dropPeerLocked(a.id)
	a.ok = false
}

func (e *endpoint) dropPeerLocked(id core.DeviceID) {
	if e.perPeer[id]--; e.perPeer[id] <= 0 {
		delete(e.perPeer, id)
	}
}

// handshake runs one side of the handshake on m's first stream, bounded by
// Limits.HandshakeTimeout, and returns the registered session. On failure m
// is closed with the reason.
func (e *endpoint) handshake(ctx context.Context, m mux, binding []byte, pending *pendingConn, pre *precomputed, expect *core.PublicKey, expectID core.DeviceID) (*Session, error) {
	initiator := pending == nil
	hctx, cancel := context.WithTimeoutCause(ctx, e.limits.HandshakeTimeout, fmt.Errorf("%w: timed out", core.ErrHandshake))
	defer cancel()
	stop := context.AfterFunc(hctx, func() { m.close(fmt.Errorf("%w: %w", core.ErrHandshake, context.Cause(hctx))) })
	adm := &admission{e: e, pending: pending}
	h := newHandshakerKeys(e.ident, e.noise, e.versions, adm.authorize)
	h.pre = pre
	peer, verdict, err := e.runHandshake(hctx, m, h, binding, initiator, expect, expectID)
	if !stop() && err == nil {
		err = fmt.Errorf("%w: %w", core.ErrHandshake, context.Cause(hctx))
	}
	if err != nil {
		adm.release()
		var rj *wire.RejectError
		if c := m.cause(); errors.As(c, &rj) && !errors.As(err, &rj) {
			err = fmt.Errorf("%w: %w", c, err) // the peer said why it hung up
		} else if c := context.Cause(hctx); c != nil && !errors.Is(err, c) {
			err = fmt.Errorf("%w: %w", c, err)
		}
		m.close(err)
		return nil, err
	}
	s := &Session{m: m, peer: peer.id, key: peer.key, version: peer.version, hash: peer.hash, limits: e.limits, log: e.log}
	if e.beforeRegister != nil {
		e.beforeRegister()
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		adm.release()
		if verdict != nil {
			_ = verdict.Close()
		}
		m.close(nil)
		return nil, fmt.Errorf("handshake: %w", core.ErrClosed)
	}
	// A session is as old as its admission, not its registration: the
	// responder of an IK handshake registers after its reply is on the
	// wire, so a slow goroutine could otherwise register after a later
	// session of the same device and be taken for the newer one.
	s.born = adm.born
	e.sessions[s] = struct{}{}
	if verdict != nil {
		e.wg.Add(1) // under mu, so close cannot be waiting yet
		go e.awaitVerdict(s, verdict)
	}
	e.mu.Unlock()
	context.AfterFunc(m.context(), func() { e.forget(s) })
	return s, nil
}

func (e *endpoint) runHandshake(ctx context.Context, m mux, h handshaker, binding []byte, initiator bool, expect *core.PublicKey, expectID core.DeviceID) (peerInfo, core.Stream, error) {
	var st core.Stream
	var err error
	if initiator {
		st, err = m.open(ctx)
	} else {
		st, err = m.accept(ctx)
	}
	if err != nil {
		return peerInfo{}, nil, fmt.Errorf("handshake stream: %w", err)
	}
	var peer peerInfo
	if initiator {
		peer, err = h.initiate(ctx, st, binding, expect, expectID)
	} else {
		peer, err = h.respond(ctx, st, binding)
	}
	if err == nil && peer.verdictPending {
		return peer, st, nil // the caller reads the verdict
	}
	_ = st.Close()
	return peer, nil, err
}

// awaitVerdict reads the verdict of an IK initiator on the handshake
// stream st after the session s has started (see handshaker.respondIK): an
// Accept ends it; a Reject, anything else or nothing within
// Limits.HandshakeTimeout closes the session. It owns a wg count.
func (e *endpoint) awaitVerdict(s *Session, st core.Stream) {
	defer e.wg.Done()
	defer st.Close()
	late := time.AfterFunc(e.limits.HandshakeTimeout, func() { _ = st.Close() })
	err := awaitAccept(st)
	if !late.Stop() && err != nil {
		err = fmt.Errorf("%w: no verdict in time: %w", core.ErrHandshake, err)
	}
	if err == nil || s.Err() != nil {
		return
	}
	if !errors.Is(err, core.ErrHandshake) {
		err = fmt.Errorf("%w: %w", core.ErrHandshake, err)
	}
	_ = s.Close(err)
}

// forget drops an ended session from the registry.
func (e *endpoint) forget(s *Session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.sessions[s]; ok {
		delete(e.sessions, s)
		e.dropPeerLocked(s.peer)
	}
}

// serve authenticates an inbound connection and queues it for Accept. It
// runs on its own goroutine and owns the pending slot (and its wg count)
// that beginPending took. The slot is given back once the peer is
// authorized: handshakes past that point and sessions waiting for Accept
// are bounded by the per-peer cap instead.
func (e *endpoint) serve(binding []byte, p *pendingConn) {
	defer e.wg.Done()
	s, err := e.handshake(e.ctx, p.m, binding, p, nil, nil, core.DeviceID{})
	e.releasePending(p)
	e.noise.refill() // for the next handshake, now that nobody waits
	if err != nil {
		e.log.Info("inbound handshake refused", "reason", reasonFor(err))
		return
	}
	e.log.Debug("inbound session", "peer", s.peer.Short())
	select {
	case e.accepted <- s:
	case <-s.Done():
	case <-e.ctx.Done():
		_ = s.Close(fmt.Errorf("%w: transport", core.ErrClosed))
	}
}

// dialPlan is what a dial settles before its connection exists: the
// peer's registered key, if any (IK), and the initiator's first Noise
// computations, running on their own goroutine meanwhile so that they
// overlap the QUIC handshake.
type dialPlan struct {
	peer   core.DeviceID
	expect *core.PublicKey
	pre    chan *precomputed // nil without a key
	got    *precomputed
	taken  bool
}

// plan looks up peer's key and starts the IK precomputation.
func (e *endpoint) plan(ctx context.Context, peer core.DeviceID) (*dialPlan, error) {
	p := &dialPlan{peer: peer}
	if peer.IsZero() || e.keys == nil {
		return p, nil
	}
	k, err := e.keys.LookupKey(ctx, peer)
	switch {
	case err == nil:
		if core.DeviceIDFromKey(k) != peer {
			return nil, fmt.Errorf("%w: key lookup for %s returned another device's key", core.ErrInvalidArgument, peer.Short())
		}
		p.expect = &k
	case errors.Is(err, core.ErrNotFound):
		return p, nil
	default:
		return nil, fmt.Errorf("look up key of %s: %w", peer.Short(), err)
	}
	rs, err := e.noise.peerStatic(k)
	if err != nil {
		return p, nil // the handshake reports the bad key
	}
	p.pre = make(chan *precomputed, 1)
	go func() { p.pre <- e.noise.precomputeIK(rs) }()
	return p, nil
}

// take waits for the precomputation, once; every dial calls it (through
// dial, or directly on failure) so that its goroutine has ended.
func (p *dialPlan) take() *precomputed {
	if !p.taken && p.pre != nil {
		p.got = <-p.pre
	}
	p.taken = true
	return p.got
}

// dial authenticates an outbound connection.
func (e *endpoint) dial(ctx context.Context, m mux, binding []byte, p *dialPlan) (*Session, error) {
	return e.handshake(ctx, m, binding, nil, p.take(), p.expect, p.peer)
}

// accept returns the next inbound session.
func (e *endpoint) accept(ctx context.Context) (core.Session, error) {
	select {
	case s := <-e.accepted:
		return s, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-e.ctx.Done():
		return nil, fmt.Errorf("accept: %w", core.ErrClosed)
	}
}

// isClosed reports whether close has begun.
func (e *endpoint) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// close refuses new work, closes every session and waits for the handshake
// goroutines. It reports whether this call did the closing.
func (e *endpoint) close() bool {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	e.closed = true
	live := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		live = append(live, s)
	}
	e.mu.Unlock()
	e.cancel()
	for _, s := range live {
		_ = s.Close(nil)
	}
	e.wg.Wait()
	return true
}
