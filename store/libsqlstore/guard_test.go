package libsqlstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// TestSecondOpenLocked: while a store is open, a second Open of the same
// file fails with ErrLocked (it used to succeed, and the two writers then
// failed each other's commits with UNIQUE constraint errors); once the
// first closes, the file opens again.
func TestSecondOpenLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := libsqlstore.Open(ctx, path, libsqlstore.Options{}); !errors.Is(err, core.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := st.Commit(ctx, localBatch(core.DeviceID{1}, 1, core.VersionVector{}, [3]string{"c", "k", "v"})); err != nil {
		t.Fatalf("commit after a refused second open: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2 := open(t, path, libsqlstore.Options{})
	if _, err := st2.Get(ctx, "c", "k"); err != nil {
		t.Fatal(err)
	}
}

// TestRolledBackStoreRefused: a database file rolled back in place behind
// what its store acknowledged before a clean close is refused with
// ErrDamaged, while the same older file put in place as another file (a
// restore: renamed over the path) or copied alone (no guard beside it)
// opens as it is.
func TestRolledBackStoreRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	origin := core.DeviceID{1}
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, localBatch(origin, 1, core.VersionVector{}, [3]string{"c", "a", "1"})); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err = libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, localBatch(origin, 2, core.VersionVector{origin: 1}, [3]string{"c", "b", "2"})); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, older, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := libsqlstore.Open(ctx, path, libsqlstore.Options{}); !errors.Is(err, core.ErrDamaged) {
		t.Fatalf("open of a rolled-back file: %v, want ErrDamaged", err)
	}
	restored := filepath.Join(dir, "restored.db")
	if err := os.WriteFile(restored, older, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(restored, path); err != nil {
		t.Fatal(err)
	}
	r := open(t, path, libsqlstore.Options{})
	if vv, err := r.VersionVector(ctx); err != nil || vv[origin] != 1 {
		t.Fatalf("restored copy: version vector %v, %v", vv, err)
	}
	alone := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(alone, older, 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, alone, libsqlstore.Options{})
	if vv, err := c.VersionVector(ctx); err != nil || vv[origin] != 1 {
		t.Fatalf("older copy: version vector %v, %v", vv, err)
	}
}
