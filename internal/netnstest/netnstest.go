// Package netnstest builds small virtual LANs out of Linux network
// namespaces for tests that must not touch the host's own interfaces
// (multicast above all), and runs test processes inside them.
//
// A LAN is one namespace holding a bridge (multicast snooping off) and one
// namespace per node, each joined to the bridge by a veth pair whose node
// end is eth0, with 10.77.<lan>.<i+1>/24, fd77:<lan>::<i+1>/64 and the
// multicast route 224.0.0.0/4 that mDNS needs. The test's own namespace is
// never changed.
//
// Code runs inside a namespace as a separate process (Command: the test
// binary re-executed under `ip netns exec`), not as a goroutine: a
// goroutine would have to lock its OS thread and enter the namespace with
// setns, and any socket or thread created elsewhere by libraries (the mDNS
// client, QUIC) would silently live in the wrong namespace. A process is in
// one namespace entirely. The child finds its role in an environment
// variable (Role) and talks to the test over its stdin and stdout.
//
// Everything needs root (CAP_NET_ADMIN) and the ip command (iproute2);
// Require skips the test with a clear message otherwise.
package netnstest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// RoleEnv is the environment variable that tells a re-executed test binary
// which part it plays.
const RoleEnv = "NETNSTEST_ROLE"

// Role returns the role this process was started with ("" in the test
// itself).
func Role() string { return os.Getenv(RoleEnv) }

// Require skips t unless the process runs as root with the ip command.
func Require(t testing.TB) {
	t.Helper()
	if err := Usable(); err != nil {
		t.Skipf("%v (CI runs as root with iproute2): skipped", err)
	}
}

// LAN is a bridge joining node namespaces.
type LAN struct {
	id     string
	subnet int
	bridge string
	nodes  []string
}

// Usable returns nil when this process can build LANs (root, with the ip
// command), else an error saying why not.
func Usable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs the ip command (iproute2): %w", err)
	}
	return nil
}

// New creates a LAN of n node namespaces (subnet numbers the address
// plan: 10.77.<subnet>.0/24) and deletes it when t ends.
func New(t testing.TB, n, subnet int) *LAN {
	t.Helper()
	Require(t)
	l, err := Create(n, subnet)
	if l != nil {
		t.Cleanup(l.Close)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Create creates a LAN of n node namespaces; Close deletes it. On error,
// what was created is returned for Close.
func Create(n, subnet int) (*LAN, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	l := &LAN{id: "fed" + hex.EncodeToString(b[:]), subnet: subnet}
	l.bridge = l.id + "-br"
	if err := ip("netns", "add", l.bridge); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", l.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"-n", l.bridge, "link", "set", "br0", "up"},
	}
	for _, st := range steps {
		if err := ip(st...); err != nil {
			return l, err
		}
	}
	for i := range n {
		ns := fmt.Sprintf("%s-%d", l.id, i)
		if err := ip("netns", "add", ns); err != nil {
			return l, err
		}
		l.nodes = append(l.nodes, ns)
		v := fmt.Sprintf("v%d", i)
		for _, st := range [][]string{
			{"-n", l.bridge, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", l.bridge, "link", "set", v, "master", "br0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "addr", "add", l.IPv4(i, i+1) + "/24", "dev", "eth0"},
			{"-n", ns, "addr", "add", l.IPv6(i+1) + "/64", "dev", "eth0", "nodad"},
			{"-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
		} {
			if err := ip(st...); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// Close deletes the LAN's namespaces (and with them every interface).
func (l *LAN) Close() {
	for _, ns := range append([]string{l.bridge}, l.nodes...) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// NS returns the name of node i's namespace.
func (l *LAN) NS(i int) string { return l.nodes[i] }

// IPv4 returns the address host on the LAN's subnet (node is unused: all
// nodes share the subnet).
func (l *LAN) IPv4(_ int, host int) string { return fmt.Sprintf("10.77.%d.%d", l.subnet, host) }

// IPv6 returns the ULA address host on the LAN's subnet.
func (l *LAN) IPv6(host int) string { return fmt.Sprintf("fd77:%x::%x", l.subnet, host) }

// Readdress replaces node i's IPv4 address with host on the subnet (its
// IPv6 address is left alone unless drop6), as when a laptop moves.
func (l *LAN) Readdress(t testing.TB, i, host int, drop6 bool) {
	t.Helper()
	if err := l.SetAddr(i, host, drop6); err != nil {
		t.Fatal(err)
	}
}

// SetAddr is Readdress returning its error.
func (l *LAN) SetAddr(i, host int, drop6 bool) error {
	ns := l.nodes[i]
	out, err := exec.Command("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr show: %w: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for j := 0; j+1 < len(f); j++ {
			if f[j] == "inet" {
				if err := ip("-n", ns, "addr", "del", f[j+1], "dev", "eth0"); err != nil {
					return err
				}
			}
		}
	}
	if drop6 {
		if err := ip("-n", ns, "addr", "del", l.IPv6(i+1)+"/64", "dev", "eth0"); err != nil {
			return err
		}
	}
	if err := ip("-n", ns, "addr", "add", l.IPv4(i, host)+"/24", "dev", "eth0"); err != nil {
		return err
	}
	// Deleting the last address took the multicast route with it.
	return ip("-n", ns, "route", "replace", "224.0.0.0/4", "dev", "eth0")
}

// Command returns cmd with args to run inside node i's namespace.
func (l *LAN) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.nodes[i], name}, args...)...)
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Proc is a test process running inside a namespace.
type Proc struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	log   []string
	done  chan struct{}
}

// Start re-executes the test binary inside node i's namespace, running
// only test (its name, for -test.run) with role in RoleEnv and env added.
// The process is killed and waited for when t ends.
func (l *LAN) Start(t testing.TB, i int, test, role string, env ...string) *Proc {
	t.Helper()
	cmd := l.Command(i, os.Args[0], "-test.run=^"+test+"$", "-test.v=false", "-test.count=1")
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), env...)
	cmd.Stderr = &prefixWriter{t: t, prefix: role + ": "}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", role, l.nodes[i], err)
	}
	p := &Proc{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-p.done
		_ = cmd.Wait()
	})
	return p
}

// Kill ends the process at once (a device switched off).
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
}

// Send writes one line to the process's stdin.
func (p *Proc) Send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("send %q: %v", line, err)
	}
}

// Await returns the first line from the process, from now on, for which
// match is true, failing t after timeout.
func (p *Proc) Await(ctx context.Context, timeout time.Duration, what string, match func(string) bool) string {
	p.t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for {
		select {
		case line := <-p.lines:
			if match(line) {
				return line
			}
		case <-p.done:
			p.t.Fatalf("process ended while waiting for %s; it printed:\n%s", what, strings.Join(p.Lines(), "\n"))
		case <-tm.C:
			p.t.Fatalf("no %s within %s; the process printed:\n%s", what, timeout, strings.Join(p.Lines(), "\n"))
		case <-ctx.Done():
			p.t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// Lines returns every line the process printed so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Stdin returns the lines written to a child's stdin (in the child).
func Stdin() *bufio.Scanner { return bufio.NewScanner(os.Stdin) }

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + line)
	}
	return len(b), nil
}
