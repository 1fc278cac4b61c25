package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/registry"
)

// Discovery wiring. While the network is up the node runs every configured
// mechanism (Options.Discovery) with a Mesh read from the node's own state
// (identity, registry, mesh secret, listening addresses). What a mechanism
// reports for a trusted device goes to the connection manager:
//
//   - its addresses into the address book (peers.Manager.Learn: persisted,
//     and the redial loop dials a changed list at once), the local
//     network's first, so a LAN path is preferred over any other;
//   - on the local network, a new address list closes sessions on a path
//     the device left (peers.Manager.Moved), so the node follows a laptop
//     to its new network at once;
//   - the sighting time into the registry's last_seen (at most every
//     touchEvery per device).
//
// Stats (Reach) says, per known device, where and by which mechanism it
// was last seen, and why it is not connected.

// LANMechanism is the name of the local-network mechanism, whose
// addresses are preferred.
const LANMechanism = "mdns"

const (
	// touchEvery throttles last_seen writes caused by discovery.
	touchEvery = 30 * time.Second
	// secretFresh is how long the mesh secret read for discovery is
	// reused: a rotation reaches discovery within it.
	secretFresh = time.Second
	// rerunMin and rerunMax bound the wait before a failed mechanism runs
	// again.
	rerunMin, rerunMax = 2 * time.Second, time.Minute
)

// Mechanism is one discovery mechanism the node runs.
type Mechanism struct {
	// Name says which mechanism reported an address ("mdns", "dht",
	// "static"); LANMechanism's addresses are preferred.
	Name string
	// New builds it on the node's Mesh, once per Start.
	New func(m discovery.Mesh) (core.Discoverer, error)
}

// DiscoveryOptions is the discovery part of Options.
type DiscoveryOptions struct {
	// Mechanisms run while the network is up.
	Mechanisms []Mechanism
	// PeerEvent reports a session with a trusted peer that started
	// (up) or ended, with the reason it ended.
	PeerEvent func(peer core.DeviceID, up bool, reason string)
}

// Reach is what the node knows of one device's reachability.
type Reach struct {
	Device    core.DeviceID
	Name      string
	Connected bool
	// LastSeen is the registry's last_seen (a session or a sighting).
	LastSeen time.Time
	// Mechanism and Addrs say by which mechanism and where the device was
	// last sighted ("" and nil: never since this node started); Sighted
	// is when.
	Mechanism string
	Addrs     []string
	Sighted   time.Time
	// Book is the address book's addresses for the device.
	Book []string
	// Why says why it is not connected ("" when connected).
	Why string
}

// discoveryState is the node's record of sightings.
type discoveryState struct {
	mu      sync.Mutex
	by      map[core.DeviceID]map[string]sighting // per mechanism
	last    map[core.DeviceID]lastSighting
	touched map[core.DeviceID]time.Time

	secret    registry.Secret // cached for secretFresh (meshView.Secret)
	secretErr error
	secretAt  time.Time
}

type sighting struct {
	addrs []string
	at    time.Time
}

type lastSighting struct {
	mech string
	sighting
}

// meshView is the discovery.Mesh of a node.
type meshView struct{ c *Core }

func (v meshView) DeviceID() core.DeviceID   { return v.c.Ident.DeviceID() }
func (v meshView) Sign(msg []byte) []byte    { return v.c.Ident.Sign(msg) }
func (v meshView) PublicKey() core.PublicKey { return v.c.Ident.PublicKey() }

// Secret returns the mesh secret, read from the registry at most every
// secretFresh: mDNS asks at every question heard on the LAN (other
// devices' services included), and the registry read takes the write lock.
func (v meshView) Secret() (registry.Secret, error) {
	ds := &v.c.disc
	now := v.c.Opts.Clock.Now()
	ds.mu.Lock()
	if !ds.secretAt.IsZero() && now.Sub(ds.secretAt) < secretFresh && !now.Before(ds.secretAt) {
		s, err := ds.secret, ds.secretErr
		ds.mu.Unlock()
		return s, err
	}
	ds.mu.Unlock()
	s, err := v.c.Reg.MeshSecret()
	if err != nil {
		err = fmt.Errorf("%w: %w", discovery.ErrNoSecret, err)
	}
	ds.mu.Lock()
	ds.secret, ds.secretErr, ds.secretAt = s, err, now
	ds.mu.Unlock()
	return s, err
}

func (v meshView) TrustedKey(id core.DeviceID) (core.PublicKey, bool) {
	if id == v.c.Ident.DeviceID() {
		return core.PublicKey{}, false
	}
	return v.c.Trust.TrustedKey(context.Background(), id)
}

func (v meshView) Addrs() []string {
	addr := v.c.Net.Addr()
	if addr == "" {
		return nil
	}
	out, err := discovery.LocalAddrs(addr)
	if err != nil {
		return []string{addr} // not host:port: an in-memory address
	}
	return out
}

// Mesh returns the node's discovery.Mesh.
func (c *Core) Mesh() discovery.Mesh { return meshView{c} }

// startDiscovery runs every mechanism on the network's context (called by
// Start once the network is up).
func (c *Core) startDiscovery() {
	c.Net.mu.Lock()
	ctx := c.Net.runCtx
	c.Net.mu.Unlock()
	if ctx == nil {
		return
	}
	for _, mech := range c.Opts.Discovery.Mechanisms {
		d, err := mech.New(c.Mesh())
		if err != nil {
			c.Log.Warn("discovery mechanism not started", "mechanism", mech.Name, "err", err)
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runMechanism(ctx, mech.Name, d)
		}()
	}
}

// runMechanism runs d until ctx ends, running it again (with backoff) when
// it fails: no multicast route yet, the network down.
func (c *Core) runMechanism(ctx context.Context, name string, d core.Discoverer) {
	wait := rerunMin
	self := core.PeerInfo{Device: c.Ident.DeviceID()}
	for {
		started := c.Opts.Clock.Now()
		err := d.Run(ctx, self, func(p core.PeerInfo) { c.sighted(ctx, name, p) })
		if ctx.Err() != nil {
			return
		}
		if c.Opts.Clock.Now().Sub(started) > rerunMax {
			wait = rerunMin
		}
		c.Log.Warn("discovery stopped; running it again", "mechanism", name, "in", wait, "err", err)
		tick, stop := core.Wait(core.SchedulerOf(c.Opts.Clock), wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
		}
		wait = min(2*wait, rerunMax)
	}
}

// sighted handles one report of a mechanism.
func (c *Core) sighted(ctx context.Context, mech string, p core.PeerInfo) {
	if p.Device == c.Ident.DeviceID() {
		return
	}
	if _, ok := c.Trust.TrustedKey(ctx, p.Device); !ok {
		return
	}
	ds := &c.disc
	ds.mu.Lock()
	if ds.by == nil {
		ds.by = map[core.DeviceID]map[string]sighting{}
		ds.last = map[core.DeviceID]lastSighting{}
		ds.touched = map[core.DeviceID]time.Time{}
	}
	byMech := ds.by[p.Device]
	if byMech == nil {
		byMech = map[string]sighting{}
		ds.by[p.Device] = byMech
	}
	if len(p.Addrs) == 0 { // gone from this mechanism
		delete(byMech, mech)
		ds.mu.Unlock()
		return
	}
	prev := byMech[mech]
	byMech[mech] = sighting{addrs: slices.Clone(p.Addrs), at: p.Seen}
	ds.last[p.Device] = lastSighting{mech: mech, sighting: byMech[mech]}
	addrs := slices.Clone(p.Addrs)
	if lan, ok := byMech[LANMechanism]; ok && mech != LANMechanism {
		addrs = append(slices.Clone(lan.addrs), addrs...)
	}
	now := c.Opts.Clock.Now()
	touch := now.Sub(ds.touched[p.Device]) >= touchEvery
	if touch {
		ds.touched[p.Device] = now
	}
	ds.mu.Unlock()

	if mech == LANMechanism && prev.addrs != nil && !slices.Equal(prev.addrs, p.Addrs) {
		c.Peers.Moved(p.Device, p.Addrs)
	}
	c.Peers.Learn(ctx, p.Device, addrs)
	if touch {
		c.Trust.Touch(ctx, p.Device, p.Seen)
	}
}

// Reach returns, for every device of the registry but this one, what the
// node knows of its reachability, sorted by id.
func (c *Core) Reach(ctx context.Context) ([]Reach, error) {
	devs, err := c.Trust.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("reach: %w", err)
	}
	connected := map[core.DeviceID]bool{}
	for _, id := range c.Peers.Connected(core.DeviceID{}) {
		connected[id] = true
	}
	ds := &c.disc
	out := make([]Reach, 0, len(devs))
	for _, d := range devs {
		if d.ID == c.Ident.DeviceID() {
			continue
		}
		r := Reach{Device: d.ID, Name: d.Name, Connected: connected[d.ID], LastSeen: d.LastSeen, Book: c.Peers.Addrs(d.ID)}
		ds.mu.Lock()
		if l, ok := ds.last[d.ID]; ok {
			r.Mechanism, r.Addrs, r.Sighted = l.mech, slices.Clone(l.addrs), l.at
		}
		ds.mu.Unlock()
		r.Why = c.whyNot(d, r)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device.Compare(out[j].Device) < 0 })
	return out, nil
}

// whyNot says why the device is not connected.
func (c *Core) whyNot(d registry.Device, r Reach) string {
	switch {
	case r.Connected:
		return ""
	case d.Trust == registry.TrustRevoked:
		return "revoked"
	case d.Trust != registry.TrustTrusted && d.Trust != registry.TrustOwner:
		return "not trusted"
	case c.Net.Addr() == "":
		return "this node is not started"
	case c.Peers.Paused(d.ID):
		return "paused (Node.PausePeer)"
	}
	if err := c.Peers.LastDialError(d.ID); err != nil {
		return "unreachable: " + shortErr(err)
	}
	if len(r.Book) == 0 && r.Mechanism == "" {
		return "not seen on any network yet"
	}
	if c.Peers.Active(d.ID) {
		return "connecting"
	}
	return "waiting to redial"
}

// shortErr is the outermost part of an error's text that says the most.
func shortErr(err error) string {
	switch {
	case errors.Is(err, core.ErrUnauthorized):
		return "refused (not authorized)"
	case errors.Is(err, core.ErrHandshake):
		return "handshake failed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// codeMesh is the Mesh of a pairing announcement: the code's secret, this
// device's identity and addresses, and nobody trusted.
type codeMesh struct {
	meshView
	secret registry.Secret
}

func (m codeMesh) Secret() (registry.Secret, error) { return m.secret, nil }

func (m codeMesh) TrustedKey(core.DeviceID) (core.PublicKey, bool) { return core.PublicKey{}, false }

// CodeMesh returns the Mesh of the announcement of an invitation whose
// canonical code is code (see discovery.CodeSecret).
func (c *Core) CodeMesh(code string) discovery.Mesh {
	return codeMesh{meshView: meshView{c}, secret: discovery.CodeSecret(code)}
}

// AnnounceCode runs d, an announcer built on CodeMesh, until until or until
// the network stops.
func (c *Core) AnnounceCode(d core.Discoverer, until time.Time) {
	c.Net.mu.Lock()
	runCtx := c.Net.runCtx
	c.Net.mu.Unlock()
	if runCtx == nil {
		return
	}
	ctx, cancel := context.WithCancel(runCtx)
	expired, stop := core.Wait(core.SchedulerOf(c.Opts.Clock), until.Sub(c.Opts.Clock.Now()))
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		defer stop()
		select {
		case <-expired:
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer c.wg.Done()
		defer cancel()
		err := d.Run(ctx, core.PeerInfo{Device: c.Ident.DeviceID()}, func(core.PeerInfo) {})
		if ctx.Err() == nil {
			c.Log.Warn("pairing announcement stopped", "err", err)
		}
	}()
}
