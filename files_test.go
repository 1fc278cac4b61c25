package federation_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// openFilesUnder counts this process's file descriptors open on a path
// under dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			out = append(out, target)
		}
	}
	return out
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o700))
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}

// TestCloseReleasesFiles opens, writes to and closes a node on the same
// directory 100 times in one process: every open sees every earlier write,
// and after each Close no descriptor stays open on the directory. Every
// other time, the closed database file is replaced by a copy of itself at
// the same path (as a restore does) before reopening.
func TestCloseReleasesFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var id federation.DeviceID
	for i := range 100 {
		n, err := federation.New(federation.Config{Dir: dir})
		require.NoError(t, err, "open %d", i)
		if i == 0 {
			id = n.DeviceID()
		}
		require.Equal(t, id, n.DeviceID(), "open %d: identity", i)
		for j := range i {
			v, err := n.Get(ctx, "notes", fmt.Sprintf("k%03d", j))
			require.NoError(t, err, "open %d: key %d", i, j)
			require.Equal(t, fmt.Sprintf("v%d", j), string(v))
		}
		require.NoError(t, n.Put(ctx, "notes", fmt.Sprintf("k%03d", i), []byte(fmt.Sprintf("v%d", i))))
		require.NoError(t, n.Close(), "close %d", i)
		require.Empty(t, openFilesUnder(t, dir), "close %d left files open", i)
		if i%2 == 1 {
			db := filepath.Join(dir, federation.DBFile)
			tmp := filepath.Join(t.TempDir(), "copy.db")
			copyFile(t, db, tmp)
			for _, suffix := range []string{"", "-wal", "-shm"} {
				require.NoError(t, removeIfExists(db+suffix))
			}
			copyFile(t, tmp, db)
		}
	}
}

// TestClosedDatabaseFileIsSelfContained: after a clean Close, a copy of
// federation.db alone (no WAL, no shared memory file) holds every write and
// the device's identity.
func TestClosedDatabaseFileIsSelfContained(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	id := n.DeviceID()
	for i := range 50 {
		require.NoError(t, n.Put(ctx, "notes", fmt.Sprintf("k%02d", i), []byte(fmt.Sprintf("v%d", i))))
	}
	root := n.Root("notes")
	require.NoError(t, n.Close())

	copyDir := filepath.Join(t.TempDir(), "copy")
	copyFile(t, filepath.Join(dir, federation.DBFile), filepath.Join(copyDir, federation.DBFile))
	c, err := federation.New(federation.Config{Dir: copyDir})
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, id, c.DeviceID(), "the copy kept the device's identity")
	require.Equal(t, root, c.Root("notes"))
	for i := range 50 {
		v, err := c.Get(ctx, "notes", fmt.Sprintf("k%02d", i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("v%d", i), string(v))
	}
}
