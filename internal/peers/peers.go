package peers

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// Keeping sessions up. A node keeps one session with every trusted,
// non-revoked device it has an address for, from both sides and across
// restarts:
//
//   - Every SyncHello announces the sender's listen addresses and a random
//     instance number drawn at each Start. The receiver records the
//     addresses (an unspecified host, as in ":0", is replaced by the address
//     the session comes from), as does Connect for the address it dialled;
//     the address book persists in the store (metaPeers), so a restarted
//     node redials its peers, and a peer learns a restarted node's new
//     address from its next hello.
//   - The redial loop, started by Start, dials every such device that has
//     no session, with exponential backoff and jitter (redialMin doubling
//     to redialMax); the backoff starts over once a session has stayed up
//     for redialStable, so a session that fails at once is not redialled
//     in a hot loop. A device whose addresses changed since its last dial
//     (a hello, Connect or an AddrSource told of a new one) is dialled at
//     the next look, without waiting out its backoff.
//   - A device keeps at most one session with a peer. A session whose hello
//     names a new instance of the peer replaces the older sessions (the
//     peer restarted: they are dead and would otherwise linger until QUIC's
//     idle timeout). Two sessions of the same instance come from both sides
//     dialling at once: both devices keep the one dialled by the device with
//     the lower id, so they never close each other's choice in a loop.

const (
	// redialMin is the first redial delay (jittered down to half).
	redialMin = 100 * time.Millisecond
	// redialMax caps the redial delay.
	redialMax = 15 * time.Second
	// redialStable is how long a session must last for the backoff to
	// start over when it ends.
	redialStable = 5 * time.Second
	// redialScan is how often the loop looks for peers to redial when
	// nothing wakes it.
	redialScan = 250 * time.Millisecond
	// maxPeerAddrs bounds the addresses kept per peer.
	maxPeerAddrs = 4
	// metaPeers is the store metadata key of the address book.
	metaPeers = "node.peers"
)

// errReplaced closes a session that another session with the same peer
// replaced.
var errReplaced = fmt.Errorf("%w: replaced by another session with the same device", core.ErrClosed)

// poke wakes the redial loop.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// hold counts a session (or a dial) with id as active until release.
func (m *Manager) hold(id core.DeviceID) {
	m.mu.Lock()
	m.active[id]++
	m.mu.Unlock()
}

func (m *Manager) release(id core.DeviceID) {
	m.mu.Lock()
	if m.active[id]--; m.active[id] <= 0 {
		delete(m.active, id)
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) isActive(id core.DeviceID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[id] > 0
}

// Addrs returns the addresses of id in the address book, most recent
// first. The address book is the first AddrSource of the redial loop.
func (m *Manager) Addrs(id core.DeviceID) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.addrs[id])
}

// peerAddrs returns every address known for id: the address book's first,
// then each AddrSource's, without duplicates.
func (m *Manager) peerAddrs(id core.DeviceID) []string {
	out := m.Addrs(id)
	for _, src := range m.allSources() {
		for _, a := range src.Addrs(id) {
			if a != "" && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// Learn records addresses of id (most recent first) in the address book,
// persists the book when it changed and wakes the redial loop. Addresses of
// this device and of revoked devices are ignored.
func (m *Manager) Learn(ctx context.Context, id core.DeviceID, addrs []string) {
	addrs = withoutRelayed(addrs) // computed by the relay's source, never kept
	if id.IsZero() || id == m.cfg.Self || len(addrs) == 0 {
		return
	}
	m.mu.Lock()
	if m.revoked[id] {
		m.mu.Unlock()
		return
	}
	old := m.addrs[id]
	merged := make([]string, 0, maxPeerAddrs)
	for _, a := range append(slices.Clone(addrs), old...) {
		if a != "" && len(a) <= wire.MaxAddrLen && !slices.Contains(merged, a) && len(merged) < maxPeerAddrs {
			merged = append(merged, a)
		}
	}
	changed := !slices.Equal(old, merged)
	var book []byte
	var err error
	if changed {
		m.addrs[id] = merged
		book, err = json.Marshal(m.addrs)
	}
	m.mu.Unlock()
	if !changed {
		return
	}
	if err == nil && m.cfg.Book != nil {
		err = m.cfg.Book.SetMeta(ctx, metaPeers, book)
	}
	if err != nil {
		m.log.Warn("save peer addresses", "peer", id.Short(), "err", err)
	}
	m.poke()
}

// loadAddrs reads the persisted address book (at Start).
func (m *Manager) loadAddrs(ctx context.Context) {
	if m.cfg.Book == nil {
		return
	}
	b, err := m.cfg.Book.Meta(ctx, metaPeers)
	if err != nil {
		if !errors.Is(err, core.ErrNotFound) {
			m.log.Warn("load peer addresses", "err", err)
		}
		return
	}
	var book map[core.DeviceID][]string
	if err := json.Unmarshal(b, &book); err != nil {
		m.log.Warn("load peer addresses", "err", err)
		return
	}
	m.mu.Lock()
	for id, addrs := range book {
		if len(addrs) > maxPeerAddrs {
			addrs = addrs[:maxPeerAddrs]
		}
		m.addrs[id] = addrs
	}
	m.mu.Unlock()
}

// newInstance draws this run's instance number from Config.Rand (or
// crypto/rand).
func (m *Manager) newInstance() uint64 {
	var b [8]byte
	r := m.cfg.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return uint64(m.sched.Now().UnixNano()) | 1
	}
	return binary.BigEndian.Uint64(b[:]) | 1 // never 0: 0 means "none"
}

// Greet handles the announcement in the peer's hello on l: it records the
// peer's addresses (see Dialable) and closes the sessions with the peer
// that this one replaces (see the top of this file). The handler calls it
// once, when the hello arrives.
func (l *Link) Greet(ctx context.Context, instance uint64, addrs []string) {
	m := l.m
	m.Learn(ctx, l.peer, addrs)
	preferOutbound := m.cfg.Self.Compare(l.peer) < 0 // we hold the lower id
	var victims []*Link
	m.mu.Lock()
	l.instance, l.greeted = instance, true
	for o := range m.links {
		if o == l || o.peer != l.peer || !o.greeted {
			continue
		}
		if o.instance == l.instance && o.relayed != l.relayed {
			// A direct path appeared (or only a relayed one did): both
			// sides keep the direct session.
			if o.relayed {
				victims = append(victims, o)
				continue
			}
			victims = append(victims, l)
			break
		}
		if o.instance != l.instance || o.outbound == l.outbound || l.outbound == preferOutbound {
			// The peer restarted, or we dialled twice (keep the newer), or
			// the newer session is the one both sides keep.
			victims = append(victims, o)
			continue
		}
		victims = append(victims, l)
		break
	}
	m.mu.Unlock()
	for _, v := range victims {
		m.log.Debug("closing a replaced session", "peer", v.peer.Short(), "restarted", v.instance != l.instance)
		_ = v.sess.Close(errReplaced)
	}
}

// remoteAddresser is the optional capability of a Session that knows the
// peer's network address (transport.Session does).
type remoteAddresser interface {
	// RemoteAddr returns the peer's address as host:port, or "".
	RemoteAddr() string
}

// Dialable turns announced addresses into ones this node can dial: an
// unspecified host (a node listening on every interface) is replaced by the
// host the session comes from, when the session knows it (RemoteAddr).
func Dialable(addrs []string, sess core.Session) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			out = append(out, a) // not host:port (an in-memory address)
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			ra, ok := sess.(remoteAddresser)
			if !ok || isRelayed(sess) {
				continue
			}
			rhost, _, err := net.SplitHostPort(ra.RemoteAddr())
			if err != nil {
				continue
			}
			a = net.JoinHostPort(rhost, port)
		}
		out = append(out, a)
	}
	return out
}

// redialState is the redial loop's record of one peer.
type redialState struct {
	failures int       // dials (or short sessions) since the last stable one
	next     time.Time // no dial before
	dialing  bool
	up       bool // a session was active at the last look
	upSince  time.Time
	tried    []string // the addresses of the last dial
	probe    probeState
}

// redialDelay is the jittered backoff after failures failures: uniform in
// [d/2, d] with d = redialMin·2^failures, capped at redialMax.
func (m *Manager) redialDelay(failures int) time.Duration {
	d := redialMax
	if failures < 20 {
		d = min(redialMax, redialMin<<failures)
	}
	return d/2 + m.jitter(d/2+1)
}

type dialResult struct {
	peer  core.DeviceID
	ok    bool
	probe bool // a direct probe beside a relayed session (relay.go)
}

// redialLoop keeps a session with every device of the roster it has an
// address for, until ctx ends.
func (m *Manager) redialLoop(ctx context.Context, tr core.Transport) {
	states := map[core.DeviceID]*redialState{}
	results := make(chan dialResult)
	var dials sync.WaitGroup
	defer dials.Wait()
	dialing := 0
	for {
		dialing += m.redialRound(ctx, tr, states, results, &dials)
		tick, stop := core.Wait(m.sched, redialScan)
		if m.idle != nil {
			m.idle(dialing, m.sched.Now())
		}
		select {
		case <-ctx.Done():
			stop()
			return
		case r := <-results:
			dialing--
			st := states[r.peer]
			st.dialing = false
			if r.probe {
				st.probed(m, r.ok)
			} else if !r.ok {
				st.failures++
				st.next = m.sched.Now().Add(m.redialDelay(st.failures))
			}
		case <-tick:
		case <-m.wake:
		}
		stop()
	}
}

// redialRound starts a dial to every device of the roster with a known
// address, no session and no backoff pending. It returns how many dials it
// started.
func (m *Manager) redialRound(ctx context.Context, tr core.Transport, states map[core.DeviceID]*redialState, results chan<- dialResult, dials *sync.WaitGroup) int {
	devs, err := m.cfg.Roster.Peers(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("redial: list devices", "err", err)
		}
		return 0
	}
	now := m.sched.Now()
	started := 0
	for _, id := range devs {
		if id == m.cfg.Self || m.isRevoked(id) {
			continue
		}
		st := states[id]
		if st == nil {
			st = &redialState{}
			states[id] = st
		}
		if st.dialing {
			continue // its result comes back on results
		}
		if m.isActive(id) {
			if !st.up {
				st.up, st.upSince = true, now
			}
			started += m.probeDirect(ctx, tr, id, st, now, results, dials)
			continue
		}
		addrs := m.peerAddrs(id)
		if st.up { // the session ended
			st.up, st.tried = false, addrs
			if now.Sub(st.upSince) >= redialStable {
				st.failures = 0
			} else {
				st.failures++
			}
			st.next = now.Add(m.redialDelay(st.failures))
			if len(addrs) > 0 {
				m.log.Info("session ended; redialling", "peer", id.Short(), "in", st.next.Sub(now).Round(time.Millisecond))
			} else {
				m.log.Info("session ended; no address to redial, waiting for the peer", "peer", id.Short())
			}
		}
		if len(addrs) == 0 {
			continue
		}
		if now.Before(st.next) && (st.tried == nil || slices.Equal(st.tried, addrs)) {
			continue
		}
		st.dialing, st.tried = true, addrs
		started++
		dials.Add(1)
		go func(id core.DeviceID) {
			defer dials.Done()
			ok := m.redial(ctx, tr, id, addrs)
			select {
			case results <- dialResult{peer: id, ok: ok}:
			case <-ctx.Done():
			}
		}(id)
	}
	return started
}

// redial dials id at each of its addresses in turn until one works.
func (m *Manager) redial(ctx context.Context, tr core.Transport, id core.DeviceID, addrs []string) bool {
	m.hold(id)
	defer m.release(id)
	addrs, deadline := directFirst(addrs)
	for _, a := range addrs {
		if m.activeOthers(id) {
			return true // the peer dialled us meanwhile
		}
		sess, err := m.dialWithin(ctx, tr, a, id, deadline(a))
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			m.log.Debug("redial failed", "peer", id.Short(), "addr", a, "err", err)
			continue
		}
		m.Learn(ctx, id, []string{a})
		m.serve(ctx, sess, true)
		m.log.Info("redialled", "peer", id.Short(), "addr", a)
		return true
	}
	return false
}

// activeOthers reports whether id has an active session or dial besides
// the caller's own hold.
func (m *Manager) activeOthers(id core.DeviceID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[id] > 1
}
