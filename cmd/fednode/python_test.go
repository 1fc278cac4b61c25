//go:build python

// This test needs Python 3 with the protobuf package (Debian's
// python3-protobuf); .ci/run installs it and runs:
//
//	FEDNODE_PYTHON=/usr/bin/python3 go test -tags python -run TestPythonExample ./cmd/fednode

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

func python(t *testing.T) string {
	if p := os.Getenv("FEDNODE_PYTHON"); p != "" {
		return p
	}
	return "python3"
}

// runExample runs examples/python/example.py with args and requires it to
// print its convergence line.
func runExample(t *testing.T, args ...string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "examples", "python")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python(t), append([]string{"example.py"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("python example %s:\n%s", args[0], out)
	require.NoError(t, err)
	require.Contains(t, string(out), "converged: plans/holiday = 'mountains and seaside' on both devices")
}

// TestPythonExample starts two real fednode processes per run and runs
// the Python example against them to convergence (pairing them through
// the API): once over Connect on their Unix sockets, once over a NATS
// server started here.
func TestPythonExample(t *testing.T) {
	bin := buildFednode(t)
	node := func(name string, extra ...string) *fednodeProc {
		args := append([]string{"-dir", t.TempDir(), "-name", name, "-listen", "127.0.0.1:0",
			"-collection", "plans=manual", "-log-level", "warn"}, extra...)
		return startFednode(t, bin, args...)
	}

	t.Run("connect", func(t *testing.T) {
		a, b := node("laptop"), node("phone")
		runExample(t, "connect", "--a", a.ready["socket"], "--b", b.ready["socket"])
		a.stop(t)
		b.stop(t)
	})

	t.Run("nats", func(t *testing.T) {
		ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
		require.NoError(t, err)
		go ns.Start()
		require.True(t, ns.ReadyForConnections(10*time.Second))
		defer ns.Shutdown()
		a := node("laptop", "-nats", ns.ClientURL(), "-nats-prefix", "fed.laptop", "-socket", "-")
		b := node("phone", "-nats", ns.ClientURL(), "-nats-prefix", "fed.phone", "-socket", "-")
		require.Equal(t, "-", a.ready["socket"], "NATS only: no socket")
		runExample(t, "nats", "--url", ns.ClientURL(), "--a", "fed.laptop", "--b", "fed.phone")
		a.stop(t)
		b.stop(t)
	})
}
