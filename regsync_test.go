package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/federationtest"
)

// pairInto pairs joiner with host through the ceremony (approving when the
// SAS strings match).
func pairInto(t *testing.T, host, joiner *federation.Node) { federationtest.Pair(t, host, joiner) }

func trusts(ctx context.Context, n *federation.Node, id federation.DeviceID, level federation.TrustLevel) bool {
	devs, err := n.Devices(ctx)
	if err != nil {
		return false
	}
	for _, d := range devs {
		if d.ID == id {
			return d.Trust == level
		}
	}
	return false
}

// TestRegistryReplicatesAndRevocationReachesEveryDevice: devices paired
// with the phone learn of each other through the replicated registry; a
// revocation made on one device closes the revoked device's sessions on
// every other device within a second, and it gets nothing written after.
func TestRegistryReplicatesAndRevocationReachesEveryDevice(t *testing.T) {
	ctx := context.Background()
	phone, laptop, tablet := quicNode(t, "phone"), quicNode(t, "laptop"), quicNode(t, "tablet")
	pairInto(t, phone, laptop)
	pairInto(t, phone, tablet)
	// The laptop never met the tablet: it learns of it from the phone's
	// signed "add" operation, synced like data.
	require.Eventually(t, func() bool { return trusts(ctx, laptop, tablet.DeviceID(), federation.TrustTrusted) }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return trusts(ctx, tablet, laptop.DeviceID(), federation.TrustTrusted) }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, laptop.Connect(ctx, tablet.Addr(), tablet.DeviceID()))
	// A rename made on the laptop reaches the phone.
	require.NoError(t, laptop.RenameDevice(ctx, tablet.DeviceID(), "kitchen tablet"))
	require.Eventually(t, func() bool {
		devs, _ := phone.Devices(ctx)
		for _, d := range devs {
			if d.ID == tablet.DeviceID() {
				return d.Name == "kitchen tablet"
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, laptop.Put(ctx, "notes", "before", []byte("1")))
	waitValue(t, tablet, "notes", "before", "1")
	connected := func(n *federation.Node, id federation.DeviceID) bool {
		for _, p := range n.Peers() {
			if p.Device == id {
				return true
			}
		}
		return false
	}
	require.True(t, connected(laptop, tablet.DeviceID()))
	var gen uint64
	require.Eventually(t, func() bool {
		a, errA := phone.MeshSecret()
		b, errB := laptop.MeshSecret()
		c, errC := tablet.MeshSecret()
		gen = a.Generation
		return errA == nil && errB == nil && errC == nil && a == b && b == c
	}, 5*time.Second, 5*time.Millisecond, "every device holds the same mesh secret")
	oldSecret, _ := tablet.MeshSecret()

	start := time.Now()
	require.NoError(t, phone.RevokeDevice(ctx, tablet.DeviceID()))
	require.Eventually(t, func() bool { return !connected(laptop, tablet.DeviceID()) && !connected(phone, tablet.DeviceID()) },
		time.Second, 2*time.Millisecond, "every device closes its sessions with the revoked device within a second")
	elapsed := time.Since(start)
	t.Logf("revocation on the phone closed the laptop's session with the tablet in %v", elapsed)
	require.True(t, trusts(ctx, laptop, tablet.DeviceID(), federation.TrustRevoked))
	require.Eventually(t, func() bool {
		a, errA := phone.MeshSecret()
		b, errB := laptop.MeshSecret()
		return errA == nil && errB == nil && a == b && a.Generation > gen
	}, 5*time.Second, 5*time.Millisecond, "the remaining devices rotate to a new secret generation")
	newSecret, _ := laptop.MeshSecret()
	got, _ := tablet.MeshSecret()
	require.Equal(t, oldSecret, got, "the revoked device never gets the new generation")
	require.NotEqual(t, newSecret.Key, got.Key)

	require.NoError(t, laptop.Put(ctx, "notes", "after", []byte("2")))
	require.Error(t, tablet.Connect(ctx, laptop.Addr(), laptop.DeviceID()), "the laptop refuses the revoked tablet")
	time.Sleep(200 * time.Millisecond)
	_, err := tablet.Get(ctx, "notes", "after")
	require.ErrorIs(t, err, federation.ErrNotFound)
}
