//go:build python

// This test needs Python 3 with the protobuf package (Debian's
// python3-protobuf); .ci/run installs it and runs:
//
//	FEDNODE_PYTHON=/usr/bin/python3 go test -tags python -run TestPythonExample ./cmd/fednode

package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// buildFednode builds this command once into a temporary directory.
func buildFednode(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fednode")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// fednodeProc is a running fednode process.
type fednodeProc struct {
	cmd    *exec.Cmd
	ready  map[string]string // the ready line's fields
	stderr *strings.Builder
}

// startFednode runs bin with args and waits for its ready line.
func startFednode(t *testing.T, bin string, args ...string) *fednodeProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	p := &fednodeProc{cmd: cmd, stderr: new(strings.Builder)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "fednode ready ") {
				lines <- sc.Text()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		p.ready = map[string]string{}
		for _, f := range strings.Fields(line)[2:] {
			k, v, _ := strings.Cut(f, "=")
			p.ready[k] = v
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("fednode %v did not start: %s", args, p.stderr)
	}
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *fednodeProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "fednode exits cleanly on a signal: %s", p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("fednode did not stop: %s", p.stderr)
	}
}

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
