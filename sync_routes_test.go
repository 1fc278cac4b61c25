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

// A session whose Direct frames were both lost on the way (a lossy link)
// must not wait forever: each side waits for the other's Direct before it
// sends anything, so a side that has not received one repeats its own until
// it does. The peer here, scripted, sends its hello and holds back its
// Direct until the node has sent one a second time; then it expects the
// node's changes.
func TestLostDirectFramesAreRepeated(t *testing.T) {
	ctx := context.Background()
	node := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.ListenAddr = "127.0.0.1:0"
	})
	peer, err := identity.Generate(nil)
	require.NoError(t, err)
	node.TrustDevice(peer.PublicKey())
	require.NoError(t, node.Start(ctx))
	require.NoError(t, node.Put(ctx, "notes", "k", []byte("v")))
	tr, err := transport.NewQUIC(ctx, transport.QUICConfig{
		Identity: peer, Authorizer: transport.NewAllowList(node.PublicKey()), ListenAddr: "127.0.0.1:0",
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })

	s, err := tr.Dial(ctx, node.Addr(), node.DeviceID())
	require.NoError(t, err)
	defer s.Close(nil)
	out, err := s.OpenStream(ctx)
	require.NoError(t, err)
	hello, err := wire.AppendFrame(nil, wire.TypeSyncHello, wire.AppendSyncHello(nil, wire.SyncHello{VV: core.VersionVector{}, Instance: 1}))
	require.NoError(t, err)
	_, err = out.Write(hello)
	require.NoError(t, err)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in, err := s.AcceptStream(sctx)
	require.NoError(t, err)

	frames := make(chan wire.Frame, 64)
	go func() {
		defer close(frames)
		for {
			f, err := wire.ReadFrame(in, nil, 1<<24)
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	next := func(within time.Duration) wire.Frame {
		t.Helper()
		select {
		case f, ok := <-frames:
			require.True(t, ok, "the node closed the session")
			return f
		case <-time.After(within):
			t.Fatalf("no frame from the node within %v", within)
		}
		return wire.Frame{}
	}
	directs := 0
	deadline := time.Now().Add(5 * time.Second)
	for directs < 2 {
		f := next(time.Until(deadline))
		if f.Type == wire.TypeDirect {
			directs++
			continue
		}
		require.Equal(t, wire.TypeSyncHello, f.Type, "the node sent %v before the peer's Direct", f.Type)
	}
	// The peer's own Direct (its first, lost, is sent again): now the node
	// streams what the peer lacks.
	direct, err := wire.AppendFrame(nil, wire.TypeDirect, wire.AppendVV(nil, core.VersionVector{}))
	require.NoError(t, err)
	_, err = out.Write(direct)
	require.NoError(t, err)
	for {
		f := next(5 * time.Second)
		if f.Type == wire.TypeChanges {
			changes, err := wire.DecodeChanges(f.Payload)
			require.NoError(t, err)
			require.Len(t, changes, 1)
			require.Equal(t, "k", changes[0].Key)
			return
		}
	}
}
