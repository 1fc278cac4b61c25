package main

import (
	"bufio"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "fednode exits cleanly on a signal: %s", p.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("fednode did not stop: %s", p.stderr)
	}
}
