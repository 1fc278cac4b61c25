package peers

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
)

// Relayed paths. A relay (package relay) adds an AddrSource whose
// addresses start with RelayAddrPrefix, and the transport dials them
// through the relay: the session is the same end-to-end session as a
// direct one. The Manager prefers direct paths:
//
//   - a redial tries the direct addresses first, each within
//     DirectDeadline when a relay address is there to fall back on, then the
//     relay addresses;
//   - while every session with a peer is relayed, the redial loop keeps
//     probing the peer's direct addresses (relayProbeMin doubling to
//     relayProbeMax); a probe that connects is served beside the relayed
//     session, and once both hellos arrived both devices close the relayed
//     one (Greet). The sync protocol runs on the new session from its
//     hello, as after any reconnection: nothing is lost, and what the old
//     session had in flight is not applied twice (the version vectors
//     say what each side holds).
//
// Relay addresses are computed by their source from the mesh secret and
// rotate with it: the address book never keeps them.

// RelayAddrPrefix starts every relay address (relay.Scheme).
const RelayAddrPrefix = "relay:"

// DirectDeadline bounds a direct dial when a relay address is there to
// fall back on: past it, the device is reached through the relay.
const DirectDeadline = 2 * time.Second

const (
	relayProbeMin = 2 * time.Second
	relayProbeMax = 60 * time.Second
)

func isRelayAddr(a string) bool { return strings.HasPrefix(a, RelayAddrPrefix) }

// isRelayed reports whether sess runs through a relay.
func isRelayed(sess core.Session) bool {
	ra, ok := sess.(remoteAddresser)
	return ok && isRelayAddr(ra.RemoteAddr())
}

func withoutRelayed(addrs []string) []string {
	if !slices.ContainsFunc(addrs, isRelayAddr) {
		return addrs
	}
	return slices.DeleteFunc(slices.Clone(addrs), isRelayAddr)
}

// directFirst orders addrs direct first, relay last, and returns each
// address's dial deadline.
func directFirst(addrs []string) ([]string, func(string) time.Duration) {
	direct := withoutRelayed(addrs)
	if len(direct) == len(addrs) {
		return addrs, func(string) time.Duration { return DialDeadline }
	}
	out := append(slices.Clone(direct), slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return !isRelayAddr(a) })...)
	return out, func(a string) time.Duration {
		if isRelayAddr(a) {
			return DialDeadline
		}
		return DirectDeadline
	}
}

// AddSource adds an AddrSource after the configured ones (a relay
// attachment, once the transport is up) and wakes the redial loop.
func (m *Manager) AddSource(src AddrSource) {
	m.mu.Lock()
	m.sources = append(m.sources, src)
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) allSources() []AddrSource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(slices.Clone(m.cfg.Sources), m.sources...)
}

// onlyRelayed reports whether every session with id (one at least) runs
// through a relay.
func (m *Manager) onlyRelayed(id core.DeviceID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for l := range m.links {
		if l.peer == id {
			if !l.relayed {
				return false
			}
			n++
		}
	}
	return n > 0
}

// probeState is the redial loop's record of direct probes to a peer
// reached through a relay.
type probeState struct {
	failures int
	next     time.Time
}

func (st *redialState) probed(m *Manager, ok bool) {
	if ok {
		st.probe = probeState{}
		return
	}
	st.probe.failures++
	d := relayProbeMax
	if st.probe.failures < 10 {
		d = min(relayProbeMax, relayProbeMin<<st.probe.failures)
	}
	st.probe.next = m.sched.Now().Add(d/2 + m.jitter(d/2+1))
}

// probeDirect starts a dial of id's direct addresses when every session
// with id is relayed and no probe is due later. It returns how many dials
// it started (0 or 1).
func (m *Manager) probeDirect(ctx context.Context, tr core.Transport, id core.DeviceID, st *redialState, now time.Time, results chan<- dialResult, dials *sync.WaitGroup) int {
	if !m.onlyRelayed(id) {
		st.probe = probeState{}
		return 0
	}
	direct := withoutRelayed(m.peerAddrs(id))
	if len(direct) == 0 {
		return 0
	}
	if st.probe.next.IsZero() {
		st.probe.next = now.Add(relayProbeMin)
	}
	if now.Before(st.probe.next) {
		return 0
	}
	st.dialing = true
	dials.Add(1)
	go func() {
		defer dials.Done()
		ok := false
		for _, a := range direct {
			sess, err := m.dialWithin(ctx, tr, a, id, DirectDeadline)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				m.log.Debug("direct probe failed", "peer", id.Short(), "addr", a, "err", err)
				continue
			}
			m.Learn(ctx, id, []string{a})
			m.serve(ctx, sess, true)
			m.log.Info("direct path to a relayed peer", "peer", id.Short(), "addr", a)
			ok = true
			break
		}
		select {
		case results <- dialResult{peer: id, ok: ok, probe: true}:
		case <-ctx.Done():
		}
	}()
	return 1
}
