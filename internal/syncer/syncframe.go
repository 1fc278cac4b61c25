package syncer

import "github.com/devicemesh/federation/internal/wire"

// FrameLimit is the largest frame a node reads on a sync stream, given
// Network.Limits.MaxFrameSize as the host set it (0 when unset): that size
// when set, as every other stream of the transport honours it (never above
// wire.MaxFrameSize), else maxSyncFrame, room for the largest value. A peer
// that sends a larger frame loses its session; values larger than the limit
// then do not reach this device.
func FrameLimit(maxFrameSize int) int {
	if l := maxFrameSize; l > 0 {
		return min(l, wire.MaxFrameSize)
	}
	return maxSyncFrame
}
