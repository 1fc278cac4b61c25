package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/audit"
)

// registryAudit summarises a node's audit log: the registry operations it
// records as "kind by author" (from registry.Op.AuditEntry), how many
// RevokeDevice entries it holds, and every entry that audit.Salvage had to
// substitute for a refused one.
func registryAudit(t *testing.T, n *federation.Node) (ops map[string]bool, revokes int, salvaged []audit.Entry) {
	t.Helper()
	ctx := context.Background()
	all, err := n.Audit().Query(ctx, audit.Filter{})
	require.NoError(t, err)
	ops = map[string]bool{}
	for _, e := range all {
		if _, bad := e.Detail.Get(audit.SalvageKey); bad {
			salvaged = append(salvaged, e)
		}
		if e.Kind != audit.KindRegistryOp {
			continue
		}
		op, _ := e.Detail.Get("op")
		if _, ok := e.Detail.Get("sessions_closed"); ok {
			revokes++
			continue
		}
		ops[fmt.Sprintf("%s by %s", op.Text, e.Device.Short())] = true
	}
	return ops, revokes, salvaged
}

// TestEveryRegistryOperationIsAudited: every kind of registry operation
// (add by pairing, rename, set-policy, revoke, mesh secret rotation), made
// on a device and received from a peer, is in the audit log of both, and
// no entry is ever refused (RevokeDevice's entry once used a detail key the
// audit log refuses, and was dropped with a warning; operations were never
// audited at all).
func TestEveryRegistryOperationIsAudited(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	tablet, watch := quicNode(t, "tablet"), quicNode(t, "watch")
	pairInto(t, phone, laptop)
	pairInto(t, phone, tablet)
	require.Eventually(t, func() bool { return trusts(ctx, laptop, tablet.DeviceID(), federation.TrustTrusted) }, 5*time.Second, 5*time.Millisecond)
	pairInto(t, laptop, watch) // an add made by the laptop
	require.Eventually(t, func() bool { return trusts(ctx, phone, watch.DeviceID(), federation.TrustTrusted) }, 5*time.Second, 5*time.Millisecond)

	require.NoError(t, phone.RenameDevice(ctx, laptop.DeviceID(), "work laptop"))
	require.NoError(t, laptop.RenameDevice(ctx, tablet.DeviceID(), "kitchen tablet"))
	require.NoError(t, phone.SetDevicePolicy(ctx, laptop.DeviceID(), []byte(`{"media":"full"}`)))
	require.NoError(t, laptop.SetDevicePolicy(ctx, tablet.DeviceID(), []byte(`{"media":"thumbs"}`)))
	require.NoError(t, phone.RevokeDevice(ctx, tablet.DeviceID()))
	require.NoError(t, laptop.RevokeDevice(ctx, watch.DeviceID()))

	devices := []*federation.Node{phone, laptop}
	var want []string
	for _, author := range devices {
		for _, kind := range []string{"add", "rename", "set-policy", "revoke", "rotate-secret"} {
			want = append(want, kind+" by "+author.DeviceID().Short())
		}
	}
	for _, n := range devices {
		var missing []string
		require.Eventually(t, func() bool {
			ops, _, _ := registryAudit(t, n)
			missing = missing[:0]
			for _, w := range want {
				if !ops[w] {
					missing = append(missing, w)
				}
			}
			return len(missing) == 0
		}, 10*time.Second, 10*time.Millisecond, "audit log of %s lacks %v (local and from peers)", n.DeviceID().Short(), &missing)
		_, revokes, salvaged := registryAudit(t, n)
		require.Equal(t, 1, revokes, "RevokeDevice's own entry, with its sessions_closed count")
		require.Empty(t, salvaged, "an audit entry was refused and salvaged: a detail the validator does not accept")
		require.NoError(t, n.Audit().Verify(ctx))
	}
	// The tablet, revoked by the phone, also audited what it received
	// before its revocation, the phone's operations included.
	ops, _, salvaged := registryAudit(t, tablet)
	require.True(t, ops["add by "+phone.DeviceID().Short()])
	require.Empty(t, salvaged)
}

// TestRefusedAuditEntryIsNeverDroppedSilently: an entry the validator
// refuses is replaced by a substitute that keeps its kind, device and valid
// fields, and says so.
func TestRefusedAuditEntryIsNeverDroppedSilently(t *testing.T) {
	e := audit.Entry{Kind: audit.KindRegistryOp, Detail: audit.Detail{audit.Text("op", "revoke"), audit.Num("bad-key", 3), audit.Text("why", "has spaces")}}
	l := audit.New(audit.NewMemory(), audit.Options{})
	_, err := l.Append(context.Background(), e)
	require.ErrorIs(t, err, audit.ErrInvalidEntry)
	s, err := l.Append(context.Background(), audit.Salvage(e))
	require.NoError(t, err)
	require.Equal(t, audit.KindRegistryOp, s.Kind)
	op, ok := s.Detail.Get("op")
	require.True(t, ok)
	require.Equal(t, "revoke", op.Text)
	f, ok := s.Detail.Get(audit.SalvageKey)
	require.True(t, ok)
	require.Equal(t, "invalid_entry", f.Text)
	f, _ = s.Detail.Get("audit_dropped_fields")
	require.EqualValues(t, 2, f.Num)
}
