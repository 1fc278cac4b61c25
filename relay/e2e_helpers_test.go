package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/federationtest"
	"github.com/devicemesh/federation/transport"
	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// fedrelayBin builds cmd/fedrelay once per test binary.
func fedrelayBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fedrelay-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "fedrelay")
		cmd := exec.Command("go", "build", "-o", buildPath, "../cmd/fedrelay")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build fedrelay: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// relayProc is a fedrelay process.
type relayProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	ready   map[string]string // udp, tls, http, nats
	logPath string
	dataDir string
	done    chan struct{}
	exitErr error // once done
}

// startRelay runs fedrelay with args (plus listen addresses on loopback)
// and waits for its READY line.
func startRelay(t *testing.T, args ...string) *relayProc {
	t.Helper()
	dir := t.TempDir()
	p := &relayProc{t: t, logPath: filepath.Join(dir, "fedrelay.log"), dataDir: filepath.Join(dir, "data"), done: make(chan struct{})}
	full := append([]string{"-http", "127.0.0.1:0", "-data", p.dataDir}, args...)
	if !hasFlag(args, "-nats-only") {
		full = append(full, "-udp", "127.0.0.1:0", "-data-udp", "127.0.0.1:0", "-tls", "127.0.0.1:0")
	}
	p.cmd = exec.Command(fedrelayBin(t), full...)
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = logf
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") {
				line <- sc.Text()
			}
		}
	}()
	select {
	case l := <-line:
		p.ready = map[string]string{}
		for _, f := range strings.Fields(l)[1:] {
			k, v, _ := strings.Cut(f, "=")
			p.ready[k] = v
		}
	case <-p.done:
		b, _ := os.ReadFile(p.logPath)
		t.Fatalf("fedrelay exited before READY:\n%s", b)
	case <-time.After(60 * time.Second):
		t.Fatal("fedrelay not ready in 60s")
	}
	return p
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

// stop sends SIGTERM and waits (then kills after 10s).
func (p *relayProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once.
func (p *relayProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// metric reads one series' value from /metrics (0 when absent).
func (p *relayProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	body := p.metricsText(t)
	sum := 0.0
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+" ") || (!strings.Contains(name, "{") && strings.HasPrefix(l, name+"{")) {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}

func (p *relayProc) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + p.ready["http"] + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// rss is the process's resident memory in bytes (Linux).
func (p *relayProc) rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("rss: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// filterConn is a UDP socket whose packets can be dropped both ways: a
// direct path that a test blocks and unblocks. The relay attachment has a
// socket of its own and is never blocked.
type filterConn struct {
	net.PacketConn
	blocked         atomic.Bool
	passed, dropped atomic.Int64
}

func (c *filterConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.blocked.Load() {
			if err == nil {
				c.passed.Add(1)
			}
			return n, a, err
		}
		c.dropped.Add(1)
	}
}

func (c *filterConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if c.blocked.Load() {
		c.dropped.Add(1)
		return len(b), nil
	}
	c.passed.Add(1)
	return c.PacketConn.WriteTo(b, a)
}

// testLimits end dead direct sessions within seconds.
var testLimits = transport.Limits{IdleTimeout: 3 * time.Second, KeepAlive: 500 * time.Millisecond, HandshakeTimeout: 3 * time.Second}

// relayedNode starts a node on libSQL whose direct UDP path goes through a
// filterConn, attached to the relay at relayAddr.
func relayedNode(t *testing.T, name, relayAddr string) (*federation.Node, *filterConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := &filterConn{PacketConn: pc}
	n, err := federation.New(federation.Config{
		Dir:    t.TempDir(),
		Device: federation.DeviceConfig{Name: name, Type: "test"},
		Network: federation.NetworkConfig{Transport: func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
			return transport.NewQUIC(ctx, transport.QUICConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, Conn: fc, Limits: testLimits, Logger: p.Logger})
		}},
		Relay: federation.RelayConfig{Addr: relayAddr},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n, fc
}

// pair pairs joiner into host's mesh (directly).
func pair(t *testing.T, host, joiner *federation.Node) { federationtest.Pair(t, host, joiner) }

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventuallyf(t, cond, d, 20*time.Millisecond, "%s: not within %v", what, d)
}

// sameSecret waits until every node holds the same mesh secret.
func sameSecret(t *testing.T, nodes ...*federation.Node) {
	t.Helper()
	eventually(t, 20*time.Second, "one mesh secret", func() bool {
		first, err := nodes[0].MeshSecret()
		if err != nil {
			return false
		}
		for _, n := range nodes[1:] {
			s, err := n.MeshSecret()
			if err != nil || s != first {
				return false
			}
		}
		return true
	})
}

// holds reports whether n holds coll/key with value want.
func holds(n *federation.Node, coll, key, want string) bool {
	v, err := n.Get(context.Background(), coll, key)
	return err == nil && string(v) == want
}
