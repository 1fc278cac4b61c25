package federationtest

import (
	"context"
	"testing"

	"github.com/devicemesh/federation"
)

// Pair adds joiner to host's mesh through the real pairing ceremony: host
// opens an invitation, joiner joins with its QR string, and host approves
// when the short authentication string joiner shows is the one host sees
// (both nodes must be started). It fails tb on any error.
func Pair(tb testing.TB, host, joiner *federation.Node) {
	tb.Helper()
	ctx := context.Background()
	shown := make(chan string, 1)
	inv, err := host.Invite(ctx, federation.InviteOptions{Approve: func(ctx context.Context, r federation.PairRequest) (bool, error) {
		return r.SAS == <-shown, nil
	}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := joiner.Join(ctx, inv.QR, federation.JoinOptions{Show: func(r federation.PairRequest) { shown <- r.SAS }}); err != nil {
		tb.Fatal(err)
	}
}
