package federation_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

func connectedTo(n *federation.Node, id federation.DeviceID) bool {
	return slices.ContainsFunc(n.Peers(), func(p federation.PeerStatus) bool { return p.Device == id })
}

// TestPauseResumeDisconnectPeer: a paused peer is disconnected and stays
// so (neither side's redial gets through) while it stays trusted; resume
// brings it back with what it missed; a plain disconnect heals by itself.
func TestPauseResumeDisconnectPeer(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	pairInto(t, phone, laptop)
	require.NoError(t, phone.Put(ctx, "notes", "before", []byte("1")))
	waitValue(t, laptop, "notes", "before", "1")

	closed, err := phone.PausePeer(ctx, laptop.DeviceID())
	require.NoError(t, err)
	require.GreaterOrEqual(t, closed, 1)
	require.Eventually(t, func() bool { return !connectedTo(phone, laptop.DeviceID()) && !connectedTo(laptop, phone.DeviceID()) },
		5*time.Second, 5*time.Millisecond)
	require.NoError(t, phone.Put(ctx, "notes", "paused", []byte("2")))
	require.ErrorIs(t, phone.Connect(ctx, laptop.Addr(), laptop.DeviceID()), federation.ErrPeerPaused)
	// The laptop keeps trying (its redial loop, and a Connect by hand):
	// nothing gets through for as long as the pause lasts.
	_ = laptop.Connect(ctx, phone.Addr(), phone.DeviceID())
	time.Sleep(1500 * time.Millisecond)
	_, err = laptop.Get(ctx, "notes", "paused")
	require.ErrorIs(t, err, federation.ErrNotFound)
	require.False(t, connectedTo(phone, laptop.DeviceID()))
	st, err := phone.Stats(ctx)
	require.NoError(t, err)
	var why string
	for _, d := range st.Discovery.Devices {
		if d.Device == laptop.DeviceID() {
			why = d.NotConnected
		}
	}
	require.Equal(t, "paused (Node.PausePeer)", why, "Stats say why the paused device is not connected")
	ds, err := phone.Devices(ctx)
	require.NoError(t, err)
	for _, d := range ds {
		if d.ID == laptop.DeviceID() {
			require.True(t, d.Trust.CanSync(), "a paused device stays trusted")
		}
	}

	require.NoError(t, phone.ResumePeer(ctx, laptop.DeviceID()))
	waitValue(t, laptop, "notes", "paused", "2")

	n, err := laptop.DisconnectPeer(ctx, phone.DeviceID())
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, 1)
	require.NoError(t, phone.Put(ctx, "notes", "after", []byte("3")))
	waitValue(t, laptop, "notes", "after", "3")

	_, err = phone.PausePeer(ctx, phone.DeviceID())
	require.ErrorIs(t, err, federation.ErrInvalidArgument)
}
