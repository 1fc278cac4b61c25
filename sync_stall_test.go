package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// A trusted device whose sessions stall is cut off within the configured
// timeouts instead of holding them forever (the transport's keep-alives
// keep a silent QUIC connection up): a session with no stream, a stream
// with no hello, and a frame cut off in the middle after a good hello.
func TestStalledSessionsTimeOut(t *testing.T) {
	const helloT, frameT = 400 * time.Millisecond, 400 * time.Millisecond
	ctx := context.Background()
	node := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.ListenAddr = "127.0.0.1:0"
		c.Network.Limits = transport.Limits{HelloTimeout: helloT, FrameTimeout: frameT, KeepAlive: 100 * time.Millisecond}
	})
	peer, err := identity.Generate(nil)
	require.NoError(t, err)
	node.TrustDevice(peer.PublicKey())
	require.NoError(t, node.Start(ctx))
	tr, err := transport.NewQUIC(ctx, transport.QUICConfig{
		Identity: peer, Authorizer: transport.NewAllowList(node.PublicKey()), ListenAddr: "127.0.0.1:0",
		Limits: transport.Limits{KeepAlive: 100 * time.Millisecond},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })

	hello, err := wire.AppendFrame(nil, wire.TypeSyncHello, wire.AppendSyncHello(nil, wire.SyncHello{VV: core.VersionVector{}, Instance: 1}))
	require.NoError(t, err)
	cases := []struct {
		name string
		// act misbehaves on the session; it returns when the stall begins.
		act   func(t *testing.T, s core.Session)
		limit time.Duration
	}{
		{"no stream", func(*testing.T, core.Session) {}, helloT},
		{"no hello", func(t *testing.T, s core.Session) {
			_, err := s.OpenStream(ctx) // sends the stream header only
			require.NoError(t, err)
		}, helloT},
		{"hello cut short", func(t *testing.T, s core.Session) {
			st, err := s.OpenStream(ctx)
			require.NoError(t, err)
			_, err = st.Write(hello[:len(hello)-1])
			require.NoError(t, err)
		}, helloT},
		{"frame cut short after hello", func(t *testing.T, s core.Session) {
			st, err := s.OpenStream(ctx)
			require.NoError(t, err)
			_, err = st.Write(hello)
			require.NoError(t, err)
			// Past the hello timeout, the session is still up: the hello counted.
			select {
			case <-s.Done():
				t.Fatal("session with a good hello closed")
			case <-time.After(3 * helloT):
			}
			_, err = st.Write([]byte{byte(wire.TypeChanges), 0, 0, 1, 0, 1, 2, 3}) // 256 bytes announced, 3 sent
			require.NoError(t, err)
		}, frameT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := tr.Dial(ctx, node.Addr(), node.DeviceID())
			require.NoError(t, err)
			defer s.Close(nil)
			c.act(t, s)
			start := time.Now()
			select {
			case <-s.Done():
			case <-time.After(c.limit + 5*time.Second):
				t.Fatalf("stalled session still open %v after the stall (timeout %v)", time.Since(start), c.limit)
			}
			t.Logf("closed %v after the stall began", time.Since(start).Round(time.Millisecond))
			require.Less(t, time.Since(start), c.limit+3*time.Second)
		})
	}
}
