package federation_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// TestJoinDoesNotWaitForADeadAddress: an invitation whose first address
// swallows packets (a stale or foreign interface) still pairs quickly: the
// next address is dialled without waiting for the first to time out (the
// handshake timeout is 5 s).
func TestJoinDoesNotWaitForADeadAddress(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	hole, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	require.NoError(t, err)
	defer hole.Close()

	inv, err := phone.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return true, nil }})
	require.NoError(t, err)
	rest, ok := strings.CutPrefix(inv.QR, "devicemesh:pair?")
	require.True(t, ok)
	qr := "devicemesh:pair?a=" + url.QueryEscape(hole.LocalAddr().String()) + "&" + rest

	start := time.Now()
	_, err = laptop.Join(ctx, qr, federation.JoinOptions{})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	require.NoError(t, phone.Put(ctx, "notes", "k", []byte("v")))
	waitValue(t, laptop, "notes", "k", "v")
}

// TestInvitationCarriesDialableAddresses: a node listening on every
// interface invites with its interfaces' addresses, never "[::]:port".
func TestInvitationCarriesDialableAddresses(t *testing.T) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: t.TempDir(), Network: federation.NetworkConfig{ListenAddr: ":0"}, Discovery: federation.DiscoveryConfig{LAN: federation.LANOff}})
	require.NoError(t, err)
	defer n.Close()
	require.NoError(t, n.Start(ctx))
	inv, err := n.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return false, nil }})
	require.NoError(t, err)
	q, err := url.ParseQuery(strings.TrimPrefix(inv.QR, "devicemesh:pair?"))
	require.NoError(t, err)
	require.NotEmpty(t, q["a"])
	require.Equal(t, n.Addrs(), q["a"])
	_, port, _ := net.SplitHostPort(n.Addr())
	for _, a := range q["a"] {
		host, p, err := net.SplitHostPort(a)
		require.NoError(t, err)
		require.Equal(t, port, p)
		require.False(t, net.ParseIP(host).IsUnspecified(), a)
	}
}
