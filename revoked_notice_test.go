package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// TestRevokedDeviceLearnsItWasRevoked: the revoked device gets the signed
// revocation with the refusal of its next dial, commits it (its own
// registry says it is revoked), raises EventRevoked naming the revoker and
// stops dialling; after a restart it still knows.
func TestRevokedDeviceLearnsItWasRevoked(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	dir := t.TempDir()
	tablet, err := federation.New(federation.Config{Dir: dir, Device: federation.DeviceConfig{Name: "tablet", Type: "tablet"},
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	require.NoError(t, err)
	require.NoError(t, tablet.Start(ctx))
	pairInto(t, phone, laptop)
	pairInto(t, phone, tablet)
	require.Eventually(t, func() bool {
		return trusts(ctx, laptop, tablet.DeviceID(), federation.TrustTrusted) && trusts(ctx, tablet, tablet.DeviceID(), federation.TrustTrusted)
	}, 10*time.Second, 10*time.Millisecond)
	sub := tablet.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()

	require.NoError(t, phone.RevokeDevice(ctx, tablet.DeviceID()))
	var ev federation.Event
	require.Eventually(t, func() bool {
		for {
			select {
			case e := <-sub.C:
				if e.Kind == federation.EventRevoked {
					ev = e
					return true
				}
			default:
				return false
			}
		}
	}, 20*time.Second, 10*time.Millisecond, "the tablet never learned it was revoked")
	require.Equal(t, phone.DeviceID(), ev.Origin)
	require.True(t, trusts(ctx, tablet, tablet.DeviceID(), federation.TrustRevoked), "the tablet's own registry says it is revoked")

	// It stops dialling: no session comes up again.
	require.Eventually(t, func() bool { return len(tablet.Peers()) == 0 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(time.Second)
	require.Empty(t, tablet.Peers())

	// After a restart it still knows, and says so again.
	require.NoError(t, tablet.Close())
	tablet, err = federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	require.NoError(t, err)
	defer tablet.Close()
	require.True(t, trusts(ctx, tablet, tablet.DeviceID(), federation.TrustRevoked))
}
