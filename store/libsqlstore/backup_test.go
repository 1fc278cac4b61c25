package libsqlstore_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/storetest"
)

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	storetest.RunBackup(t, func(t *testing.T) core.BackupStore {
		st, err := libsqlstore.Open(context.Background(), filepath.Join(dir, "store.db"), libsqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}, func(t *testing.T, r io.Reader) core.Store {
		path := filepath.Join(t.TempDir(), "restored.db")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, r); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := libsqlstore.Open(context.Background(), path, libsqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.IntegrityCheck(context.Background()); err != nil {
			t.Fatal(err)
		}
		return st
	})
	// Nothing is left behind in the store's directory but the store.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "store.db" && e.Name() != "store.db-wal" && e.Name() != "store.db-shm" && e.Name() != "store.db-lock" {
			t.Errorf("backup left %s behind", e.Name())
		}
	}
}
