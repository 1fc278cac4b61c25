package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// TestSyncStreamHonoursMaxFrameSize: a device whose Limits.MaxFrameSize is
// 64 KiB refuses a sync frame above it, as its transport's other streams
// do: a 200 KiB value never arrives, while smaller ones before it do.
func TestSyncStreamHonoursMaxFrameSize(t *testing.T) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	a := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	b := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.Transport = memFactory(net)
		c.Network.Limits.MaxFrameSize = 64 << 10
	})
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.NoError(t, a.Put(ctx, "notes", "small", []byte("fits")))
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	waitValue(t, b, "notes", "small", "fits")
	require.NoError(t, a.Put(ctx, "notes", "big", make([]byte, 200<<10)))
	require.Never(t, func() bool {
		_, err := b.Get(ctx, "notes", "big")
		return err == nil
	}, time.Second, 20*time.Millisecond, "a frame above MaxFrameSize was read")
}
