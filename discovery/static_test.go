package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
)

func TestStaticReportsAllButSelf(t *testing.T) {
	var self, other core.DeviceID
	self[0], other[0] = 1, 2
	s := Static{self: {"a:1"}, other: {"b:2", "c:3"}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var got []core.PeerInfo
	err := s.Run(ctx, core.PeerInfo{Device: self}, func(p core.PeerInfo) { got = append(got, p) })
	require.ErrorIs(t, err, context.DeadlineExceeded, "Run lasts until ctx ends")
	require.Len(t, got, 1)
	require.Equal(t, other, got[0].Device)
	require.Equal(t, []string{"b:2", "c:3"}, got[0].Addrs)
}
