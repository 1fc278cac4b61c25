package discovery

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReachableAddrs(t *testing.T) {
	ips := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	got := ReachableAddrs(ips("127.0.0.1", "::1", "fe80::1", "2001:db8::5", "fd00::7", "203.0.113.9", "192.168.1.4", "::", "ff02::fb", "::ffff:10.0.0.3"), 4433, 8)
	require.Equal(t, []string{"192.168.1.4:4433", "10.0.0.3:4433", "203.0.113.9:4433", "[fd00::7]:4433", "[2001:db8::5]:4433"}, got)
	require.Equal(t, []string{"127.0.0.1:9", "[::1]:9"}, ReachableAddrs(ips("127.0.0.1", "::1", "fe80::2"), 9, 8), "loopback only when alone")
	require.Len(t, ReachableAddrs(ips("10.0.0.1", "10.0.0.2", "10.0.0.3"), 1, 2), 2)

	got, err := LocalAddrs("192.0.2.1:77")
	require.NoError(t, err)
	require.Equal(t, []string{"192.0.2.1:77"}, got, "a specific host is kept")
	got, err = LocalAddrs("[::]:77")
	require.NoError(t, err)
	require.NotEmpty(t, got)
	for _, a := range got {
		ap := netip.MustParseAddrPort(a)
		require.Equal(t, uint16(77), ap.Port())
		require.False(t, ap.Addr().IsUnspecified())
	}
	_, err = LocalAddrs("nonsense")
	require.Error(t, err)
}
