package federation_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

const damageRecords = 200

// fillDir writes damageRecords records of 1 KiB through a node on dir and
// returns the node, still open.
func fillDir(t *testing.T, dir string) *federation.Node {
	t.Helper()
	n, err := openFilled(dir)
	require.NoError(t, err)
	return n
}

func openFilled(dir string) (*federation.Node, error) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	for i := range damageRecords {
		v := fmt.Sprintf("%04d", i) + string(make([]byte, 1020))
		if err := n.Put(ctx, "notes", fmt.Sprintf("k%04d", i), []byte(v)); err != nil {
			_ = n.Close()
			return nil, err
		}
	}
	return n, nil
}

// damageChildEnv, set in a child process, names the Dir the child fills
// before it waits to be killed.
const damageChildEnv = "FEDERATION_DAMAGE_CHILD"

// crashDir fills a new Dir in a child process and kills it with SIGKILL:
// the files a crash leaves, the writes still in the WAL. It returns the
// Dir and the device's id.
func crashDir(t *testing.T) (string, federation.DeviceID) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDamagedStoreRefused$", "-test.count=1")
	cmd.Env = append(os.Environ(), damageChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	var id federation.DeviceID
	for sc.Scan() {
		if text, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			id, err = federation.ParseDeviceID(text)
			require.NoError(t, err)
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.False(t, id.IsZero(), "the child never got ready")
	return dir, id
}

func damageChild(dir string) {
	n, err := openFilled(dir)
	if err != nil {
		fmt.Println("child:", err)
		os.Exit(3)
	}
	fmt.Println("READY", n.DeviceID().String())
	select {} // until killed
}

// requireAllThere opens dir and checks every record and the identity.
func requireAllThere(t *testing.T, dir string, id federation.DeviceID) {
	t.Helper()
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	defer n.Close()
	require.Equal(t, id, n.DeviceID())
	for i := range damageRecords {
		v, err := n.Get(ctx, "notes", fmt.Sprintf("k%04d", i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%04d", i), string(v[:4]))
	}
}

// requireRefused checks that New refuses dir as damaged, twice (the first
// refusal changed nothing, and above all minted no identity).
func requireRefused(t *testing.T, dir string) {
	t.Helper()
	for range 2 {
		n, err := federation.New(federation.Config{Dir: dir})
		if err == nil {
			id := n.DeviceID()
			_ = n.Close()
			t.Fatalf("a damaged store opened, as device %s", id.Short())
		}
		require.ErrorIs(t, err, federation.ErrDamaged)
		t.Logf("refused: %v", err)
	}
}

func truncateFile(t *testing.T, path string, size int64) {
	t.Helper()
	require.NoError(t, os.Truncate(path, size))
}

// overwrite writes garbage over n bytes of path at off.
func overwrite(t *testing.T, path string, off int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = byte(i*131 + 7)
	}
	_, err = f.WriteAt(junk, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// TestDamagedStoreRefused damages a node's files in the ways a disk, a
// careless copy or a crash can, and checks that New refuses each with
// ErrDamaged (never opening an empty store under a new identity, nor an
// older state as if it were the latest), while an undamaged file,
// including the image a crash leaves, opens with everything in it.
func TestDamagedStoreRefused(t *testing.T) {
	if dir := os.Getenv(damageChildEnv); dir != "" {
		damageChild(dir)
		return
	}
	closed := func(t *testing.T) (string, federation.DeviceID) {
		dir := t.TempDir()
		n := fillDir(t, dir)
		id := n.DeviceID()
		require.NoError(t, n.Close())
		return dir, id
	}
	crashed := crashDir
	db := func(dir string) string { return filepath.Join(dir, federation.DBFile) }

	t.Run("clean file opens", func(t *testing.T) {
		dir, id := closed(t)
		requireAllThere(t, dir, id)
	})
	t.Run("WAL deleted after a clean close opens", func(t *testing.T) {
		dir, id := closed(t)
		require.NoError(t, removeIfExists(db(dir)+"-wal"))
		requireAllThere(t, dir, id)
	})
	t.Run("crash image opens", func(t *testing.T) {
		dir, id := crashed(t)
		fi, err := os.Stat(db(dir) + "-wal")
		require.NoError(t, err)
		require.NotZero(t, fi.Size(), "the writes are in the WAL")
		requireAllThere(t, dir, id)
	})
	t.Run("database truncated to 0", func(t *testing.T) {
		dir, _ := closed(t)
		truncateFile(t, db(dir), 0)
		requireRefused(t, dir)
	})
	t.Run("database truncated to 0 and store guard removed", func(t *testing.T) {
		dir, _ := closed(t)
		truncateFile(t, db(dir), 0)
		require.NoError(t, os.Remove(db(dir)+"-lock"))
		requireRefused(t, dir)
	})
	t.Run("database header overwritten", func(t *testing.T) {
		dir, _ := closed(t)
		overwrite(t, db(dir), 0, 64)
		requireRefused(t, dir)
	})
	t.Run("database page overwritten", func(t *testing.T) {
		dir, _ := closed(t)
		fi, err := os.Stat(db(dir))
		require.NoError(t, err)
		require.Greater(t, fi.Size(), int64(8*16<<10))
		overwrite(t, db(dir), 5*16<<10, 4096)
		requireRefused(t, dir)
	})
	t.Run("WAL deleted after a crash", func(t *testing.T) {
		dir, _ := crashed(t)
		require.NoError(t, os.Remove(db(dir)+"-wal"))
		requireRefused(t, dir)
	})
	t.Run("WAL cut short after a crash", func(t *testing.T) {
		dir, _ := crashed(t)
		fi, err := os.Stat(db(dir) + "-wal")
		require.NoError(t, err)
		truncateFile(t, db(dir)+"-wal", fi.Size()/2)
		requireRefused(t, dir)
	})
	t.Run("WAL frames overwritten after a crash", func(t *testing.T) {
		dir, _ := crashed(t)
		fi, err := os.Stat(db(dir) + "-wal")
		require.NoError(t, err)
		overwrite(t, db(dir)+"-wal", fi.Size()/2, 512)
		requireRefused(t, dir)
	})
}
