package federation

import (
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// TestDHTConfig checks that DHT discovery is off until bootstrap nodes are
// given (never a public default), on with them, and that bad durations are
// refused.
func TestDHTConfig(t *testing.T) {
	n := &Node{cfg: Config{}}
	if m := n.dhtMechanisms(); len(m) != 0 {
		t.Fatalf("DHT discovery runs without bootstrap nodes: %+v", m)
	}
	n.cfg.Discovery.DHT.Bootstrap = []string{"127.0.0.1:6881"}
	if m := n.dhtMechanisms(); len(m) != 1 || m[0].Name != "dht" {
		t.Fatalf("with bootstrap nodes: mechanisms %+v, want dht", m)
	}
	bad := DiscoveryConfig{DHT: DHTConfig{Lookup: -time.Second}}
	if err := bad.validate(); !errors.Is(err, core.ErrInvalidConfig) {
		t.Fatalf("negative Lookup: %v, want ErrInvalidConfig", err)
	}
}
