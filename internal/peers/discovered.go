package peers

import (
	"fmt"
	"net"
	"slices"

	"github.com/devicemesh/federation/core"
)

// errMoved closes a session whose peer announced, on the local network,
// addresses that no longer include the session's path.
var errMoved = fmt.Errorf("%w: the peer moved to another address", core.ErrClosed)

// Moved tells the Manager that id now announces addrs on the local network
// (a discovery mechanism saw it there): each session with id whose remote
// host is not among addrs' hosts runs over a path the peer left (a laptop
// that changed networks), so it is closed and the redial loop dials the
// new addresses at once, instead of waiting for the dead path's idle
// timeout. Sessions whose remote address is unknown are left alone. It
// returns how many sessions it closed.
func (m *Manager) Moved(id core.DeviceID, addrs []string) int {
	hosts := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return 0
	}
	m.mu.Lock()
	var victims []*Link
	for l := range m.links {
		if l.peer != id {
			continue
		}
		ra, ok := l.sess.(remoteAddresser)
		if !ok {
			continue
		}
		h, _, err := net.SplitHostPort(ra.RemoteAddr())
		if err != nil || slices.Contains(hosts, h) {
			continue
		}
		victims = append(victims, l)
	}
	closing := len(victims) > 0 && !m.closed
	if closing {
		m.wg.Add(1)
	}
	m.mu.Unlock()
	if closing {
		go func() {
			defer m.wg.Done()
			for _, l := range victims {
				m.log.Info("peer moved; closing the session on its old path", "peer", id.Short())
				_ = l.sess.Close(errMoved)
			}
		}()
	}
	m.poke()
	return len(victims)
}

// LastDialError returns why the last redial of id failed (nil: it has
// not failed since its last session, or was never dialled).
func (m *Manager) LastDialError(id core.DeviceID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dialErr[id]
}

// Active reports whether id has a session or a dial in progress.
func (m *Manager) Active(id core.DeviceID) bool { return m.isActive(id) }

// setDialErr records the outcome of a redial of id (err nil: it worked).
func (m *Manager) setDialErr(id core.DeviceID, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.dialErr, id)
		return
	}
	m.dialErr[id] = err
}
