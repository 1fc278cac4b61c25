package registry

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// The registry works on the device_registry table the libSQL store's
// migrations create, across a reopen of the store file.
func TestOnLibSQLStoreTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "node.db")
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureSchema(ctx, st.DB()); err != nil { // no-op on the migrated table
		t.Fatal(err)
	}
	m := newMesh(t)
	a, b := ident(t, 1), ident(t, 2)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(a, "phone", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(b, "tablet", TrustTrusted)))
	must(t, m.s)(m.s.NewRevoke(m.owner, ts(12), b.DeviceID()))
	reg := NewSQL(st.DB())
	if err := Save(ctx, reg, m.s); err != nil {
		t.Fatal(err)
	}
	seen := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	if err := reg.Touch(ctx, a.DeviceID(), seen); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg = NewSQL(st.DB())
	list, err := reg.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := m.s.Devices()
	for i := range want {
		if want[i].ID == a.DeviceID() {
			want[i].LastSeen = seen
		}
	}
	if !reflect.DeepEqual(list, want) {
		t.Fatalf("after reopen:\n got %+v\nwant %+v", list, want)
	}
	az := NewAuthorizer(reg)
	if err := az.Authorize(ctx, a.DeviceID(), a.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := az.Authorize(ctx, b.DeviceID(), b.PublicKey()); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("revoked device authorized: %v", err)
	}
}
