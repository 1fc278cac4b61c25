package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// TestRegistryOpAfterFarFutureOps: the mesh was founded (and the laptop
// added) by a phone whose clock is 24 h ahead, so the registry's latest
// operation lies a day beyond the laptop's clock, which does not follow it
// (drift rule). The laptop must still be able to make registry operations:
// each is stamped after the registry's latest. Before the fix its rename
// failed with "not after the registry's latest operation" (ErrInvalidOp),
// and so would a revocation for the next 24 hours.
func TestRegistryOpAfterFarFutureOps(t *testing.T) {
	ctx := context.Background()
	node := func(name string, skew time.Duration) *federation.Node {
		n, err := federation.New(federation.Config{
			Dir:     t.TempDir(),
			Device:  federation.DeviceConfig{Name: name, Type: deviceType(name)},
			Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
			Clock:   skewedClock{off: skew},
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		require.NoError(t, n.Start(ctx))
		return n
	}
	phone, laptop := node("phone", 24*time.Hour), node("laptop", 0)
	pairInto(t, phone, laptop)
	require.Eventually(t, func() bool { return trusts(ctx, laptop, phone.DeviceID(), federation.TrustOwner) }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, laptop.RenameDevice(ctx, phone.DeviceID(), "skewed phone"))
	require.Eventually(t, func() bool {
		devs, _ := phone.Devices(ctx)
		for _, d := range devs {
			if d.ID == phone.DeviceID() {
				return d.Name == "skewed phone"
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "the laptop's rename reaches the phone")
}
