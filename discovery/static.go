package discovery

import (
	"context"
	"slices"
	"time"

	"github.com/devicemesh/federation/core"
)

// Static is the mechanism of addresses the host knows (a server's fixed
// address, say): Run reports each listed device once, with its addresses,
// then waits for ctx. It announces nothing.
type Static map[core.DeviceID][]string

var _ core.Discoverer = Static(nil)

// Run reports every device of s but self, then blocks until ctx ends.
func (s Static) Run(ctx context.Context, self core.PeerInfo, found func(core.PeerInfo)) error {
	now := time.Now()
	for id, addrs := range s {
		if id != self.Device && len(addrs) > 0 {
			found(core.PeerInfo{Device: id, Addrs: slices.Clone(addrs), Seen: now})
		}
	}
	<-ctx.Done()
	return ctx.Err()
}
