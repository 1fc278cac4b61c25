package federation

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
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
//     in a hot loop.
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

// links is the node's view of its peers' whereabouts and sessions.
type links struct {
	instance uint64        // this run's instance number (set by Start)
	wake     chan struct{} // pokes the redial loop

	mu       sync.Mutex
	addrs    map[core.DeviceID][]string // most recent first
	active   map[core.DeviceID]int      // sessions running or being dialled
	outbound map[core.Session]bool      // sessions this node dialled
}

func (l *links) init() {
	if l.addrs == nil {
		l.addrs = map[core.DeviceID][]string{}
		l.active = map[core.DeviceID]int{}
		l.outbound = map[core.Session]bool{}
		l.wake = make(chan struct{}, 1)
	}
}

func (l *links) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// hold counts a session (or a dial) with id as active until release.
func (l *links) hold(id core.DeviceID) {
	l.mu.Lock()
	l.active[id]++
	l.mu.Unlock()
}

func (l *links) release(id core.DeviceID) {
	l.mu.Lock()
	if l.active[id]--; l.active[id] <= 0 {
		delete(l.active, id)
	}
	l.mu.Unlock()
	l.poke()
}

func (l *links) isActive(id core.DeviceID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[id] > 0
}

// markOutbound records that this node dialled sess.
func (l *links) markOutbound(sess core.Session) {
	l.mu.Lock()
	l.outbound[sess] = true
	l.mu.Unlock()
}

// takeOutbound reports (once) whether this node dialled sess.
func (l *links) takeOutbound(sess core.Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.outbound[sess]
	delete(l.outbound, sess)
	return out
}

// peerAddrs returns the known addresses of id, most recent first.
func (n *Node) peerAddrs(id core.DeviceID) []string {
	n.links.mu.Lock()
	defer n.links.mu.Unlock()
	return slices.Clone(n.links.addrs[id])
}

// learnAddrs records addresses of id (most recent first) and persists the
// address book when it changed.
func (n *Node) learnAddrs(ctx context.Context, id core.DeviceID, addrs []string) {
	if id.IsZero() || id == n.DeviceID() || len(addrs) == 0 {
		return
	}
	n.links.mu.Lock()
	old := n.links.addrs[id]
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
		n.links.addrs[id] = merged
		book, err = json.Marshal(n.links.addrs)
	}
	n.links.mu.Unlock()
	if !changed {
		return
	}
	if err == nil {
		err = n.store.SetMeta(ctx, metaPeers, book)
	}
	if err != nil {
		n.log.Warn("save peer addresses", "peer", id.Short(), "err", err)
	}
	n.links.poke()
}

// loadAddrs reads the persisted address book (at Start).
func (n *Node) loadAddrs(ctx context.Context) {
	n.links.init()
	b, err := n.store.Meta(ctx, metaPeers)
	if err != nil {
		if !errors.Is(err, core.ErrNotFound) {
			n.log.Warn("load peer addresses", "err", err)
		}
		return
	}
	var book map[core.DeviceID][]string
	if err := json.Unmarshal(b, &book); err != nil {
		n.log.Warn("load peer addresses", "err", err)
		return
	}
	n.links.mu.Lock()
	for id, addrs := range book {
		if len(addrs) > maxPeerAddrs {
			addrs = addrs[:maxPeerAddrs]
		}
		n.links.addrs[id] = addrs
	}
	n.links.mu.Unlock()
}

// newInstance draws this run's instance number.
func (n *Node) newInstance() uint64 {
	var b [8]byte
	if _, err := io.ReadFull(n.random(), b[:]); err != nil {
		return uint64(time.Now().UnixNano()) | 1
	}
	return binary.BigEndian.Uint64(b[:]) | 1 // never 0: 0 means "none"
}

// hello is this node's SyncHello for a session.
func (n *Node) hello(vv core.VersionVector) wire.SyncHello {
	h := wire.SyncHello{VV: vv, Instance: n.links.instance}
	if a := n.Addr(); a != "" {
		h.Addrs = []string{a}
	}
	return h
}

// onHello handles the announcement in the peer's SyncHello: it records the
// peer's addresses and closes the sessions with the peer that this one
// replaces (see the top of this file).
func (n *Node) onHello(ctx context.Context, ps *peerSession, h wire.SyncHello) {
	n.learnAddrs(ctx, ps.peer, dialable(h.Addrs, ps.sess))
	self := n.DeviceID()
	preferOutbound := self.Compare(ps.peer) < 0 // we hold the lower id
	var victims []*peerSession
	n.sessMu.Lock()
	ps.instance, ps.greeted = h.Instance, true
	for o := range n.sessions {
		if o == ps || o.peer != ps.peer || !o.greeted {
			continue
		}
		if o.instance != ps.instance || o.outbound == ps.outbound || ps.outbound == preferOutbound {
			// The peer restarted, or we dialled twice (keep the newer), or
			// the newer session is the one both sides keep.
			victims = append(victims, o)
			continue
		}
		victims = append(victims, ps)
		break
	}
	n.sessMu.Unlock()
	for _, v := range victims {
		n.log.Debug("closing a replaced session", "peer", v.peer.Short(), "restarted", v.instance != ps.instance)
		_ = v.sess.Close(errReplaced)
	}
}

// remoteAddresser is the optional capability of a Session that knows the
// peer's network address (transport.Session does).
type remoteAddresser interface {
	// RemoteAddr returns the peer's address as host:port, or "".
	RemoteAddr() string
}

// dialable turns announced addresses into ones this node can dial: an
// unspecified host (a node listening on every interface) is replaced by the
// host the session comes from, when the session is a remoteAddresser.
func dialable(addrs []string, sess core.Session) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			out = append(out, a) // not host:port (an in-memory address)
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			ra, ok := sess.(remoteAddresser)
			if !ok {
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
}

// redialDelay is the jittered backoff after failures failures: uniform in
// [d/2, d] with d = redialMin·2^failures, capped at redialMax.
func redialDelay(failures int) time.Duration {
	d := redialMax
	if failures < 20 {
		d = min(redialMax, redialMin<<failures)
	}
	return d/2 + rand.N(d/2+1)
}

type dialResult struct {
	peer core.DeviceID
	ok   bool
}

// redialLoop keeps a session with every trusted device it has an address
// for, until ctx ends.
func (n *Node) redialLoop(ctx context.Context, tr Transport) {
	states := map[core.DeviceID]*redialState{}
	results := make(chan dialResult)
	var dials sync.WaitGroup
	defer dials.Wait()
	tick := time.NewTicker(redialScan)
	defer tick.Stop()
	for {
		n.redialRound(ctx, tr, states, results, &dials)
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			st := states[r.peer]
			st.dialing = false
			if !r.ok {
				st.failures++
				st.next = time.Now().Add(redialDelay(st.failures))
			}
		case <-tick.C:
		case <-n.links.wake:
		}
	}
}

// redialRound starts a dial to every trusted device with a known address,
// no session and no backoff pending.
func (n *Node) redialRound(ctx context.Context, tr Transport, states map[core.DeviceID]*redialState, results chan<- dialResult, dials *sync.WaitGroup) {
	devs, err := n.trust.devices.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("redial: list devices", "err", err)
		}
		return
	}
	now := time.Now()
	self := n.DeviceID()
	for _, d := range devs {
		if d.ID == self || (d.Trust != registry.TrustTrusted && d.Trust != registry.TrustOwner) {
			continue
		}
		st := states[d.ID]
		if st == nil {
			st = &redialState{}
			states[d.ID] = st
		}
		if st.dialing {
			continue // its result comes back on results
		}
		if n.links.isActive(d.ID) {
			if !st.up {
				st.up, st.upSince = true, now
			}
			continue
		}
		if st.up { // the session ended
			st.up = false
			if now.Sub(st.upSince) >= redialStable {
				st.failures = 0
			} else {
				st.failures++
			}
			st.next = now.Add(redialDelay(st.failures))
			if len(n.peerAddrs(d.ID)) > 0 {
				n.log.Info("session ended; redialling", "peer", d.ID.Short(), "in", st.next.Sub(now).Round(time.Millisecond))
			} else {
				n.log.Info("session ended; no address to redial, waiting for the peer", "peer", d.ID.Short())
			}
		}
		if now.Before(st.next) {
			continue
		}
		addrs := n.peerAddrs(d.ID)
		if len(addrs) == 0 {
			continue
		}
		st.dialing = true
		dials.Add(1)
		go func(id core.DeviceID) {
			defer dials.Done()
			ok := n.redial(ctx, tr, id, addrs)
			select {
			case results <- dialResult{peer: id, ok: ok}:
			case <-ctx.Done():
			}
		}(d.ID)
	}
}

// redial dials id at each of its addresses in turn until one works.
func (n *Node) redial(ctx context.Context, tr Transport, id core.DeviceID, addrs []string) bool {
	n.links.hold(id)
	defer n.links.release(id)
	for _, a := range addrs {
		if n.links.activeOthers(id) {
			return true // the peer dialled us meanwhile
		}
		dctx, cancel := context.WithTimeout(ctx, dialDeadline)
		sess, err := tr.Dial(dctx, a, id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			n.log.Debug("redial failed", "peer", id.Short(), "addr", a, "err", err)
			continue
		}
		n.learnAddrs(ctx, id, []string{a})
		n.links.markOutbound(sess)
		n.goSession(ctx, sess)
		n.log.Info("redialled", "peer", id.Short(), "addr", a)
		return true
	}
	return false
}

// activeOthers reports whether id has an active session or dial besides
// the caller's own hold.
func (l *links) activeOthers(id core.DeviceID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active[id] > 1
}
