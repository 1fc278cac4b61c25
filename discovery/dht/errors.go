package dht

import (
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Sentinel errors of package dht, for errors.Is.
var (
	// ErrNoBootstrap reports a configuration without bootstrap nodes (or
	// none that resolves): a DHT node cannot join without at least one.
	ErrNoBootstrap = fmt.Errorf("dht: no bootstrap node: %w", core.ErrInvalidConfig)
	// ErrUnreachable reports a bootstrap that reached no DHT node.
	ErrUnreachable = errors.New("dht: no DHT node reachable")
)
