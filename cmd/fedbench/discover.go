package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devicemesh/federation"
)

// The discover scenario: two paired devices on one LAN (two network
// namespaces joined by a bridge, built here; root only), each a process of
// its own re-executed from this binary. Every trial starts both nodes on
// fresh ports (so the addresses they exchanged earlier are stale) and
// times, from the start command to both, until the second device holds a
// record the first one wrote right after starting:
//
//   - ours: default configuration, the devices find each other by mDNS;
//   - baseline: LAN discovery off, the second device is given the first
//     one's address by hand (Node.Connect right after Start), as hosts did
//     before discovery.
//
// Trials alternate between the two; the result compares medians.

// discoverChildEnv marks the re-executed child process; its value is the
// node's directory.
const discoverChildEnv = "FEDBENCH_DISCOVER_DIR"

func runDiscover(ctx context.Context, args []string) (result, error) {
	if dir := os.Getenv(discoverChildEnv); dir != "" {
		discoverChild(dir)
		os.Exit(0)
	}
	fs := newFlags("discover")
	trials := fs.Int("trials", 5, "trials of each kind")
	timeout := fs.Duration("timeout", 60*time.Second, "give up on a trial after this long")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *trials < 1 {
		return result{}, fmt.Errorf("bad -trials %d", *trials)
	}
	if os.Geteuid() != 0 {
		return result{}, errors.New("needs root: it builds two network namespaces joined by a bridge")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return result{}, fmt.Errorf("needs the ip command (iproute2): %w", err)
	}
	lan, err := newBenchLAN(2)
	if err != nil {
		return result{}, err
	}
	defer lan.close()
	exe, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	var procs []*benchProc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	for i := range 2 {
		dir, err := os.MkdirTemp("", "fedbench-discover-")
		if err != nil {
			return result{}, err
		}
		defer os.RemoveAll(dir)
		p, err := startBenchProc(exe, lan.nodes[i], dir)
		if err != nil {
			return result{}, err
		}
		procs = append(procs, p)
	}
	a, b := procs[0], procs[1]

	// Pair once, with LAN discovery on (as a user would).
	progress("discover: pairing two devices in namespaces %s and %s", lan.nodes[0], lan.nodes[1])
	port := 20000
	var idA string
	for i, p := range procs {
		l, err := p.ask(ctx, *timeout, fmt.Sprintf("start %d on", port+i), "started ")
		if err != nil {
			return result{}, err
		}
		if i == 0 {
			idA = strings.Fields(l)[1]
		}
	}
	l, err := a.ask(ctx, *timeout, "invite", "invite ")
	if err != nil {
		return result{}, err
	}
	if _, err := b.ask(ctx, *timeout, "join "+strings.Fields(l)[1], "joined"); err != nil {
		return result{}, err
	}
	for _, p := range procs {
		if _, err := p.ask(ctx, *timeout, "secret", "secret "); err != nil {
			return result{}, err
		}
	}
	if _, err := a.ask(ctx, *timeout, "put pair x", "put "); err != nil {
		return result{}, err
	}
	if _, err := b.ask(ctx, *timeout, "wait pair x", "got "); err != nil {
		return result{}, err
	}
	for _, p := range procs {
		if _, err := p.ask(ctx, *timeout, "stop", "stopped"); err != nil {
			return result{}, err
		}
	}

	trial := func(n int, byHand bool) (time.Duration, error) {
		port += 2
		pa, pb := port, port+1
		key := fmt.Sprintf("k%d", n)
		mode := "on"
		bCmd := fmt.Sprintf("startwait %d on %s v", pb, key)
		if byHand {
			mode = "off"
			bCmd = fmt.Sprintf("startwait %d off %s v %s:%d %s", pb, key, lan.ipv4(0), pa, idA)
		}
		t0 := time.Now()
		if err := a.send(fmt.Sprintf("startput %d %s %s v", pa, mode, key)); err != nil {
			return 0, err
		}
		if err := b.send(bCmd); err != nil {
			return 0, err
		}
		if _, err := b.await(ctx, *timeout, "got "+key); err != nil {
			return 0, err
		}
		d := time.Since(t0)
		for _, p := range procs {
			if _, err := p.ask(ctx, *timeout, "stop", "stopped"); err != nil {
				return 0, err
			}
		}
		return d, nil
	}
	var ours, base []time.Duration
	for n := range *trials {
		for _, byHand := range []bool{true, false} {
			d, err := trial(2*n+map[bool]int{true: 0, false: 1}[byHand], byHand)
			if err != nil {
				return result{}, fmt.Errorf("trial %d (by hand: %v): %w", n, byHand, err)
			}
			if byHand {
				base = append(base, d)
			} else {
				ours = append(ours, d)
			}
			progress("discover: trial %d %-10s first synced record after %v", n, map[bool]string{true: "by hand", false: "discovered"}[byHand], d.Round(time.Millisecond))
		}
	}
	mo, mb := median(ours), median(base)
	ratio := mo.Seconds() / mb.Seconds()
	ms := func(ds []time.Duration) []float64 {
		out := make([]float64, len(ds))
		for i, d := range ds {
			out[i] = float64(d.Microseconds()) / 1000
		}
		return out
	}
	return result{
		Scenario: "discover", Ours: float64(mo.Microseconds()) / 1000, Baseline: float64(mb.Microseconds()) / 1000,
		Unit: "ms to first synced record (median)", Ratio: ratio, Target: "ratio <= 3", Pass: ratio <= 3,
		Extra: map[string]any{"trials": *trials, "discovered_ms": ms(ours), "by_hand_ms": ms(base),
			"how": "two paired devices in two network namespaces on one bridge start on fresh ports; ours: default config (mDNS); baseline: LAN discovery off, address given by hand"},
	}, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchLAN is a bridge in a namespace of its own joining node namespaces,
// each with eth0 on 10.79.0.<i+1>/24 and the multicast route mDNS needs.
type benchLAN struct {
	bridge string
	nodes  []string
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func newBenchLAN(n int) (*benchLAN, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := "fbd" + hex.EncodeToString(b[:])
	l := &benchLAN{bridge: id + "-br"}
	steps := [][]string{
		{"netns", "add", l.bridge},
		{"-n", l.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"-n", l.bridge, "link", "set", "br0", "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("%s-%d", id, i)
		l.nodes = append(l.nodes, ns)
		v := fmt.Sprintf("v%d", i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", l.bridge, "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", l.bridge, "link", "set", v, "master", "br0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "addr", "add", l.ipv4(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
		)
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			l.close()
			return nil, err
		}
	}
	return l, nil
}

func (l *benchLAN) ipv4(i int) string { return fmt.Sprintf("10.79.0.%d", i+1) }

func (l *benchLAN) close() {
	for _, ns := range append(slices.Clone(l.nodes), l.bridge) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

// benchProc is a child node process in a namespace, driven line by line.
type benchProc struct {
	ns    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startBenchProc(exe, ns, dir string) (*benchProc, error) {
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "discover")
	cmd.Env = append(os.Environ(), discoverChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a node in %s: %w", ns, err)
	}
	p := &benchProc{ns: ns, cmd: cmd, stdin: stdin, lines: make(chan string, 256)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	return p, nil
}

func (p *benchProc) send(line string) error {
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// await returns the first line starting with prefix (others are dropped).
func (p *benchProc) await(ctx context.Context, timeout time.Duration, prefix string) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("node in %s exited while waiting for %q", p.ns, prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-t.C:
			return "", fmt.Errorf("node in %s: no %q after %v", p.ns, prefix, timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (p *benchProc) ask(ctx context.Context, timeout time.Duration, line, prefix string) (string, error) {
	if err := p.send(line); err != nil {
		return "", err
	}
	return p.await(ctx, timeout, prefix)
}

func (p *benchProc) kill() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// discoverChild runs one node on dir, driven over stdin:
//
//	start <port> <on|off>                       "started <id>"
//	startput <port> <on|off> <k> <v>            start, then write notes/k: "put <k>"
//	startwait <port> <on|off> <k> <v> [addr id] start (then Connect to addr), then "got <k>" once notes/k = v
//	invite                                      "invite <qr>"
//	join <qr>                                   "joined"
//	secret                                      "secret <gen>" once held
//	put <k> <v> / wait <k> <v>                  "put <k>" / "got <k>"
//	stop                                        "stopped"
func discoverChild(dir string) {
	ctx := context.Background()
	var mu sync.Mutex
	say := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(f+"\n", a...)
	}
	fail := func(what string, err error) {
		fmt.Fprintln(os.Stderr, "fedbench discover child:", what+":", err)
		os.Exit(3)
	}
	var n *federation.Node
	done := make(chan struct{}) // closed when n stops
	start := func(port, lan string) {
		done = make(chan struct{})
		mode := federation.LANOn
		if lan == "off" {
			mode = federation.LANOff
		}
		var err error
		n, err = federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{ListenAddr: ":" + port},
			Discovery: federation.DiscoveryConfig{LAN: mode}})
		if err != nil {
			fail("open", err)
		}
		if err := n.Start(ctx); err != nil {
			fail("start", err)
		}
	}
	wait := func(k, v string) {
		n, done := n, done
		go func() {
			for {
				if got, err := n.Get(ctx, "notes", k); err == nil && string(got) == v {
					say("got %s", k)
					return
				}
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "start":
			start(f[1], f[2])
			say("started %s", n.DeviceID())
		case "startput":
			start(f[1], f[2])
			if err := n.Put(ctx, "notes", f[3], []byte(f[4])); err != nil {
				fail("put", err)
			}
			say("put %s", f[3])
		case "startwait":
			start(f[1], f[2])
			if len(f) > 6 {
				id, err := federation.ParseDeviceID(f[6])
				if err != nil {
					fail("peer id", err)
				}
				_ = n.Connect(ctx, f[5], id) // on failure the node keeps redialling
			}
			wait(f[3], f[4])
		case "invite":
			inv, err := n.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return true, nil }})
			if err != nil {
				fail("invite", err)
			}
			say("invite %s", inv.QR)
		case "join":
			if _, err := n.Join(ctx, f[1], federation.JoinOptions{}); err != nil {
				fail("join", err)
			}
			say("joined")
		case "secret":
			go func() {
				for {
					if s, err := n.MeshSecret(); err == nil {
						say("secret %d", s.Generation)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		case "put":
			if err := n.Put(ctx, "notes", f[1], []byte(f[2])); err != nil {
				fail("put", err)
			}
			say("put %s", f[1])
		case "wait":
			wait(f[1], f[2])
		case "stop":
			close(done)
			if err := n.Close(); err != nil {
				fail("close", err)
			}
			say("stopped")
		}
	}
}
