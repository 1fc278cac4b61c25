package transport

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/devicemesh/federation/identity"
)

// BenchmarkConnectIK dials a known peer over QUIC on loopback and echoes
// one byte on a new stream: the path cmd/fedbench connect measures.
func BenchmarkConnectIK(b *testing.B) {
	ctx := context.Background()
	a, _ := identity.Generate(nil)
	srv, _ := identity.Generate(nil)
	lim := Limits{MaxSessionsPerPeer: 1 << 20}
	server, err := NewQUIC(ctx, QUICConfig{Identity: srv, Authorizer: NewAllowList(a.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	client, err := NewQUIC(ctx, QUICConfig{Identity: a, Authorizer: NewAllowList(srv.PublicKey()), ListenAddr: "127.0.0.1:0", Limits: lim})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	echo(b, server)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := client.Dial(dctx, server.Addr(), srv.DeviceID())
		if err != nil {
			b.Fatal(err)
		}
		st, err := s.OpenStream(dctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Write([]byte{1}); err != nil {
			b.Fatal(err)
		}
		var buf [1]byte
		if _, err := io.ReadFull(st, buf[:]); err != nil {
			b.Fatal(err)
		}
		_ = st.Close()
		_ = s.Close(nil)
		cancel()
	}
}
