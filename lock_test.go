package federation_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// lockChildEnv, set in a child process, names the Dir the child opens; it
// prints what New returned and exits.
const lockChildEnv = "FEDERATION_LOCK_CHILD"

// openInChild opens a node on dir in a child process, writes a record and
// closes it; it returns the child's one-line report: "ok", "locked" or
// "error: ...".
func openInChild(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDirLockAcrossProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.Output()
	require.NoError(t, err, "child: %s", out)
	for _, line := range strings.Split(string(out), "\n") {
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			return r
		}
	}
	t.Fatalf("child reported nothing: %s", out)
	return ""
}

func lockChild(dir string) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: dir})
	switch {
	case errors.Is(err, federation.ErrLocked):
		fmt.Println("RESULT locked")
		return
	case err != nil:
		fmt.Println("RESULT error:", err)
		return
	}
	if err := n.Put(ctx, "notes", "child", []byte("from the child")); err != nil {
		fmt.Println("RESULT error: put:", err)
		return
	}
	if err := n.Close(); err != nil {
		fmt.Println("RESULT error: close:", err)
		return
	}
	fmt.Println("RESULT ok")
}

// TestDirLockAcrossProcesses: while a node runs on a Dir, a node in another
// process gets ErrLocked (not a store error later), and the first node's
// writes go on; once it closes, the other process opens the Dir.
func TestDirLockAcrossProcesses(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		lockChild(dir)
		return
	}
	ctx := context.Background()
	dir := t.TempDir()
	a, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, a.Put(ctx, "notes", "k0", []byte("v0")))
	require.Equal(t, "locked", openInChild(t, dir))
	for i := 1; i <= 20; i++ {
		require.NoError(t, a.Put(ctx, "notes", fmt.Sprintf("k%d", i), []byte("v")), "write %d after the other process tried", i)
	}
	require.NoError(t, a.Close())
	require.Equal(t, "ok", openInChild(t, dir))
	b, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	defer b.Close()
	require.Equal(t, a.DeviceID(), b.DeviceID())
	v, err := b.Get(ctx, "notes", "child")
	require.NoError(t, err)
	require.Equal(t, "from the child", string(v))
}

// TestDirLockInProcess: a second node on the same Dir in the same process
// gets ErrLocked, also when the host passes its own Store; the Dir is free
// again once the first node closes.
func TestDirLockInProcess(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	_, err = federation.New(federation.Config{Dir: dir})
	require.ErrorIs(t, err, federation.ErrLocked)
	st := storeKinds[0].open(t)
	_, err = federation.New(federation.Config{Dir: dir, Store: st})
	require.ErrorIs(t, err, federation.ErrLocked)
	require.NoError(t, a.Put(ctx, "notes", "k", []byte("v")), "the first node still writes")
	require.NoError(t, a.Close())
	b, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, b.Close())
}
