package federation

import "github.com/devicemesh/federation/internal/wire"

// syncFrameLimit is the largest frame this node reads on a sync stream:
// Network.Limits.MaxFrameSize when the host set it, as every other stream
// of the transport honours it (never above wire.MaxFrameSize), else
// maxSyncFrame, room for the largest value. A peer that sends a larger
// frame loses its session; values larger than the limit then do not reach
// this device.
func (n *Node) syncFrameLimit() int {
	if l := n.cfg.Network.Limits.MaxFrameSize; l > 0 {
		return min(l, wire.MaxFrameSize)
	}
	return maxSyncFrame
}
