package devices

import (
	"context"
	"errors"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
)

// TestRevocationNotice: the revoker keeps the signed revocation as the
// notice for the revoked device, which accepts exactly that (its registry
// then says it is revoked, SelfRevoked runs once), and refuses a broken
// signature, a revocation of another device and one by a stranger mesh.
func TestRevocationNotice(t *testing.T) {
	ctx := context.Background()
	a, v, other := newDevice(t), newDevice(t), newDevice(t)
	var told []core.DeviceID
	v.reg.cfg.SelfRevoked = func(by core.DeviceID) { told = append(told, by) }
	if err := a.reg.EnsureMesh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*device{v, other} {
		if err := a.reg.Add(ctx, d.ident.PublicKey(), "dev", registry.TypeUnknown); err != nil {
			t.Fatal(err)
		}
	}
	v.rep.commit(a.rep.log...)
	if a.reg.Notice(v.ident.DeviceID()) != nil {
		t.Fatal("a notice before any revocation")
	}
	if err := a.reg.Revoke(ctx, other.ident.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Revoke(ctx, v.ident.DeviceID()); err != nil {
		t.Fatal(err)
	}
	notice := a.reg.Notice(v.ident.DeviceID())
	if notice == nil {
		t.Fatal("no notice kept for the revoked device")
	}

	broken := append([]byte(nil), notice...)
	broken[len(broken)-1] ^= 1
	stranger := newDevice(t)
	if err := stranger.reg.EnsureMesh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stranger.reg.Add(ctx, v.ident.PublicKey(), "victim", registry.TypeUnknown); err != nil {
		t.Fatal(err)
	}
	if err := stranger.reg.Revoke(ctx, v.ident.DeviceID()); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"broken signature":     broken,
		"another device's":     a.reg.Notice(other.ident.DeviceID()),
		"by a stranger's mesh": stranger.reg.Notice(v.ident.DeviceID()),
		"not an operation":     []byte("revoked, trust me"),
	} {
		if ok, err := v.reg.AcceptNotice(ctx, a.ident.DeviceID(), b); ok || !errors.Is(err, ErrNotANotice) {
			t.Errorf("%s: accepted %v, err %v", name, ok, err)
		}
	}
	if len(told) != 0 || trustOf(t, v, v.ident.DeviceID()) != registry.TrustTrusted {
		t.Fatal("a refused notice changed the registry")
	}

	if ok, err := v.reg.AcceptNotice(ctx, a.ident.DeviceID(), notice); !ok || err != nil {
		t.Fatalf("genuine notice: %v, %v", ok, err)
	}
	if got := trustOf(t, v, v.ident.DeviceID()); got != registry.TrustRevoked {
		t.Fatalf("own trust %v after the notice", got)
	}
	if len(told) != 1 || told[0] != a.ident.DeviceID() {
		t.Fatalf("SelfRevoked calls: %v", told)
	}
	if ok, err := v.reg.AcceptNotice(ctx, a.ident.DeviceID(), notice); !ok || err != nil || len(told) != 1 {
		t.Fatalf("the same notice again: %v, %v, %d calls", ok, err, len(told))
	}
}

func trustOf(t *testing.T, d *device, id core.DeviceID) registry.TrustLevel {
	t.Helper()
	for _, x := range d.devices(t) {
		if x.ID == id {
			return x.Trust
		}
	}
	return 0
}
