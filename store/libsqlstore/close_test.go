package libsqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// descriptorsOn counts this process's descriptors open on the files at
// paths (those that exist).
func descriptorsOn(t *testing.T, paths ...string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list descriptors: %v", err)
	}
	var files []os.FileInfo
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			files = append(files, fi)
		}
	}
	n := 0
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue
		}
		for _, f := range files {
			if os.SameFile(fi, f) {
				n++
			}
		}
	}
	return n
}

// TestCloseLeavesSelfContainedFile: once Close returns, no descriptor of
// the process is open on the database, its WAL or its shared memory, the
// WAL holds nothing, and the database file alone (copied elsewhere) holds
// every commit.
func TestCloseLeavesSelfContainedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	origin := core.DeviceID{1}
	b := localBatch(origin, 1, core.VersionVector{}, [3]string{"c", "a", "alpha"}, [3]string{"c", "b", "beta"})
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := st.SetMeta(ctx, "m", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := descriptorsOn(t, path, path+"-wal", path+"-shm"); n == 0 {
		t.Fatal("an open store has no descriptor on its files")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if n := descriptorsOn(t, path, path+"-wal", path+"-shm"); n != 0 {
		t.Fatalf("%d descriptors still open after Close", n)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Fatalf("WAL of %d bytes left after Close", fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, cp, libsqlstore.Options{})
	for _, r := range b.Records {
		got, err := c.Get(ctx, r.Collection, r.Key)
		if err != nil || !sameRecord(got, r) {
			t.Fatalf("copy: get %s: %+v, %v", r.Key, got, err)
		}
	}
	if v, err := c.Meta(ctx, "m"); err != nil || string(v) != "v" {
		t.Fatalf("copy: meta = %q, %v", v, err)
	}
}
