package federation

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/discovery/mdns"
	"github.com/devicemesh/federation/internal/engine"
)

// LANMode says whether a node looks for its devices on the local network.
type LANMode int

// LAN discovery modes.
const (
	// LANAuto (the zero value) discovers on the local network when the
	// node uses the default QUIC transport on an address other networks'
	// devices can reach (not loopback); with Network.Transport set (an
	// in-memory network, say) or a loopback ListenAddr it stays off.
	LANAuto LANMode = iota
	// LANOn always runs mDNS discovery.
	LANOn
	// LANOff never does.
	LANOff
)

// DiscoveryConfig says how a node finds the user's other devices, and lets
// them find it, without the host passing addresses around. Everything it
// announces is readable by the mesh's devices only and changes with every
// rotation period (see package discovery).
type DiscoveryConfig struct {
	// LAN turns mDNS on the local network on or off. The zero value
	// (LANAuto) discovers there whenever that can work.
	LAN LANMode
	// Period is how often every announced name changes. 0:
	// discovery.DefaultPeriod (an hour).
	Period time.Duration
	// Interval is the time between two mDNS lookups. 0: mdns.DefaultInterval.
	Interval time.Duration
	// Mechanisms are further mechanisms run alongside mDNS (the DHT,
	// static addresses), each built on the node's discovery.Mesh at Start.
	Mechanisms []DiscoveryMechanism
	// DHT turns on internet discovery through the mainline DHT (lane h28).
	DHT DHTConfig
}

// DiscoveryMechanism is a discovery mechanism the node runs.
type DiscoveryMechanism struct {
	// Name says which mechanism found an address (in Stats): "dht",
	// "static", ...
	Name string
	// New builds the mechanism on the node's view of its mesh.
	New func(m discovery.Mesh) (Discoverer, error)
}

// validate checks c.
func (c DiscoveryConfig) validate() error {
	if c.LAN < LANAuto || c.LAN > LANOff {
		return fmt.Errorf("%w: Discovery.LAN %d", core.ErrInvalidConfig, c.LAN)
	}
	if c.Period < 0 || c.Interval < 0 {
		return fmt.Errorf("%w: negative Discovery.Period or Interval", core.ErrInvalidConfig)
	}
	for _, m := range c.Mechanisms {
		if m.Name == "" || m.New == nil {
			return fmt.Errorf("%w: a Discovery.Mechanisms entry needs Name and New", core.ErrInvalidConfig)
		}
	}
	return c.DHT.validate()
}

// lanOn reports whether LAN discovery runs under cfg.
func (cfg Config) lanOn() bool {
	switch cfg.Discovery.LAN {
	case LANOn:
		return true
	case LANOff:
		return false
	}
	if cfg.Network.Transport != nil {
		return false
	}
	host, _, err := net.SplitHostPort(cfg.Network.ListenAddr)
	if cfg.Network.ListenAddr == "" || err != nil || host == "" {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return false
	}
	return host != "localhost"
}

// discoveryOptions is the engine's part of the discovery configuration.
func (n *Node) discoveryOptions() engine.DiscoveryOptions {
	cfg := n.cfg
	var mechs []engine.Mechanism
	if cfg.lanOn() {
		mechs = append(mechs, engine.Mechanism{Name: engine.LANMechanism, New: func(m discovery.Mesh) (core.Discoverer, error) {
			return mdns.New(mdns.Config{Mesh: m, Clock: cfg.Clock, Period: cfg.Discovery.Period,
				Interval: cfg.Discovery.Interval, Rand: cfg.Rand, Logger: cfg.Logger})
		}})
	}
	mechs = append(mechs, n.dhtMechanisms()...)
	for _, m := range cfg.Discovery.Mechanisms {
		mechs = append(mechs, engine.Mechanism{Name: m.Name, New: m.New})
	}
	return engine.DiscoveryOptions{Mechanisms: mechs, PeerEvent: n.peerEvent}
}

// peerEvent raises EventPeerConnected and EventPeerDisconnected.
func (n *Node) peerEvent(peer core.DeviceID, up bool, reason string) {
	if up {
		n.publish(Event{Kind: EventPeerConnected, Origin: peer})
		return
	}
	n.publish(Event{Kind: EventPeerDisconnected, Origin: peer, Reason: reason})
}

// DiscoveryStats says, for every device of the registry but this one, where
// it was last seen and why it is not connected.
type DiscoveryStats struct {
	// Ready reports that this device holds the current mesh secret, so it
	// announces itself and recognises its devices' announcements (a newly
	// paired device becomes ready once the registry has synced).
	Ready bool
	// Devices lists the registry's devices but this one.
	Devices []DeviceReach
}

// DeviceReach is what the node knows of one device's reachability.
type DeviceReach struct {
	Device DeviceID
	Name   string
	// Connected reports a live sync session.
	Connected bool
	// LastSeen is the registry's last_seen: the last session or sighting.
	LastSeen time.Time
	// Mechanism ("mdns", "dht", ...), Addrs and Sighted say by which
	// mechanism, where and when the device was last sighted since Start
	// ("" when never).
	Mechanism string
	Addrs     []string
	Sighted   time.Time
	// Known are the addresses in the address book (kept across restarts),
	// most likely first.
	Known []string
	// NotConnected says why there is no session ("" when Connected): "not
	// seen on any network yet", "unreachable: ...", "connecting",
	// "waiting to redial", "revoked", "paused (Node.PausePeer)", "this
	// node is not started".
	NotConnected string
}

// discoveryStats collects DiscoveryStats.
func (n *Node) discoveryStats(ctx context.Context) (DiscoveryStats, error) {
	rs, err := n.c.Reach(ctx)
	if err != nil {
		return DiscoveryStats{}, err
	}
	_, secretErr := n.c.Mesh().Secret()
	out := DiscoveryStats{Ready: secretErr == nil, Devices: make([]DeviceReach, 0, len(rs))}
	for _, r := range rs {
		out.Devices = append(out.Devices, DeviceReach{
			Device: r.Device, Name: r.Name, Connected: r.Connected, LastSeen: r.LastSeen,
			Mechanism: r.Mechanism, Addrs: r.Addrs, Sighted: r.Sighted, Known: r.Book, NotConnected: r.Why,
		})
	}
	return out, nil
}
