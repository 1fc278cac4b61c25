package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/discovery/dht"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/registry"
)

// DHTConfig turns on discovery across the internet through the BitTorrent
// mainline DHT (package discovery/dht): the node publishes its sealed
// addresses as BEP 44 items under keys derived from the mesh secret and
// looks up its trusted devices' items. Setting Bootstrap is all it takes.
type DHTConfig struct {
	// Bootstrap lists DHT nodes ("host:port") to join the DHT through.
	// Empty: no DHT discovery. dht.PublicBootstrap() joins the public
	// mainline DHT; there is no default.
	Bootstrap []string
	// Listen is the UDP address of the node's own DHT node ("": any port
	// on every address).
	Listen string
	// Republish is how often the node puts its item again (0:
	// dht.DefaultRepublish); Lookup how often it reads the others' (0:
	// dht.DefaultLookup).
	Republish, Lookup time.Duration
}

// validate checks c.
func (c DHTConfig) validate() error {
	if c.Republish < 0 || c.Lookup < 0 {
		return fmt.Errorf("%w: negative Discovery.DHT.Republish or Lookup", core.ErrInvalidConfig)
	}
	return nil
}

// dhtMechanisms returns the DHT mechanism when Discovery.DHT.Bootstrap is
// set.
func (n *Node) dhtMechanisms() []engine.Mechanism {
	cfg := n.cfg
	dc := cfg.Discovery.DHT
	if len(dc.Bootstrap) == 0 {
		return nil
	}
	return []engine.Mechanism{{Name: dht.Purpose, New: func(m discovery.Mesh) (core.Discoverer, error) {
		return dht.New(dht.Config{
			Mesh: m, Devices: n.trustedDevices, Bootstrap: dc.Bootstrap, Listen: dc.Listen,
			Period: cfg.Discovery.Period, Republish: dc.Republish, Lookup: dc.Lookup,
			Clock: cfg.Clock, Rand: cfg.Rand, Logger: cfg.Logger,
		})
	}}}
}

// trustedDevices lists the devices the registry trusts (the DHT looks
// each one up).
func (n *Node) trustedDevices() []core.DeviceID {
	devs, err := n.c.Trust.List(context.Background())
	if err != nil {
		return nil
	}
	var out []core.DeviceID
	for _, d := range devs {
		if d.Trust == registry.TrustTrusted || d.Trust == registry.TrustOwner {
			out = append(out, d.ID)
		}
	}
	return out
}
