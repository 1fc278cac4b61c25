package federation_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
)

// Environment of TestRestartedDeviceReconnects' child: its Dir, its boot
// number, and the parent's address, device id and key.
const (
	restartChildEnv  = "FEDERATION_RESTART_CHILD"
	restartBootEnv   = "FEDERATION_RESTART_BOOT"
	restartParentEnv = "FEDERATION_RESTART_PARENT"
)

// restartChild runs a node on dir that trusts the parent, writes its boot
// number, prints "READY addr key" and, from the second boot on, connects to
// the parent as an application would at start; then it runs until killed.
func restartChild(dir string) {
	ctx := context.Background()
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "child:", what+":", err)
		os.Exit(3)
	}
	boot := os.Getenv(restartBootEnv)
	parent := strings.Fields(os.Getenv(restartParentEnv))
	node, err := federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	if err != nil {
		fail("open", err)
	}
	raw, err := hex.DecodeString(parent[2])
	if err != nil {
		fail("parent key", err)
	}
	var key federation.PublicKey
	copy(key[:], raw)
	node.TrustDevice(key)
	if err := node.Start(ctx); err != nil {
		fail("start", err)
	}
	if err := node.Put(ctx, "boot", "n", []byte(boot)); err != nil {
		fail("put", err)
	}
	fmt.Printf("READY %s %s\n", node.Addr(), node.PublicKey())
	if boot != "0" {
		id, err := federation.ParseDeviceID(parent[1])
		if err != nil {
			fail("parent id", err)
		}
		if err := node.Connect(ctx, parent[0], id); err != nil {
			fmt.Fprintln(os.Stderr, "child: connect:", err) // the SDK keeps redialling
		}
	}
	select {}
}

// TestRestartedDeviceReconnects: a device killed with SIGKILL and
// restarted on the same Dir reconnects to its peer within 2 s, twice
// within 30 s. Its peer still holds the dead process's sessions (QUIC only
// notices after its 30 s idle timeout); a new authenticated session from
// the device must replace them at once. Before, the peer refused the
// restarted device as "busy" once two dead sessions held its slots.
func TestRestartedDeviceReconnects(t *testing.T) {
	if dir := os.Getenv(restartChildEnv); dir != "" {
		restartChild(dir)
		return
	}
	ctx := context.Background()
	parent := newNode(t, nil, func(c *federation.Config) {
		c.Store, c.Dir = nil, t.TempDir()
		c.Network.ListenAddr = "127.0.0.1:0"
	})
	require := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	require(parent.Start(ctx))
	dir := t.TempDir()
	parentInfo := fmt.Sprintf("%s %s %s", parent.Addr(), parent.DeviceID(), parent.PublicKey())
	waitBoot := func(boot int, within time.Duration, since time.Time) time.Duration {
		t.Helper()
		for {
			v, err := parent.Get(ctx, "boot", "n")
			if err == nil && string(v) == strconv.Itoa(boot) {
				return time.Since(since)
			}
			if time.Since(since) > within {
				t.Fatalf("boot %d: the restarted device did not reconnect within %s", boot, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	cmd, ready, stderr := startRestartChild(t, dir, 0, parentInfo)
	fields := strings.Fields(<-ready)
	if len(fields) != 2 {
		t.Fatalf("child: %s", stderr)
	}
	raw, err := hex.DecodeString(fields[1])
	require(err)
	var childKey federation.PublicKey
	copy(childKey[:], raw)
	parent.TrustDevice(childKey)
	require(parent.Connect(ctx, fields[0], core.DeviceIDFromKey(childKey)))
	waitBoot(0, 10*time.Second, time.Now())

	first := time.Now()
	for boot := 1; boot <= 2; boot++ {
		// Let the session carry traffic, then crash the device.
		time.Sleep(200 * time.Millisecond)
		require(cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		restarted := time.Now()
		cmd, ready, stderr = startRestartChild(t, dir, boot, parentInfo)
		if line := <-ready; line == "" {
			t.Fatalf("boot %d: child: %s", boot, stderr)
		}
		took := waitBoot(boot, 2*time.Second, restarted)
		t.Logf("boot %d: reconnected %s after the restart (process start included)", boot, took.Round(time.Millisecond))
	}
	if since := time.Since(first); since > 30*time.Second {
		t.Fatalf("two crashes took %s, want them within 30 s", since)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// startRestartChild re-executes the test binary as the child and returns
// the rest of its READY line ("" if it exited first).
func startRestartChild(t *testing.T, dir string, boot int, parent string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestartedDeviceReconnects$", "-test.count=1")
	cmd.Env = append(os.Environ(), restartChildEnv+"="+dir, restartBootEnv+"="+strconv.Itoa(boot), restartParentEnv+"="+parent)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- rest
				return
			}
		}
		ready <- ""
	}()
	return cmd, ready, stderr
}
