package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/internal/netnstest"
)

// runDiscover measures how long two paired devices starting together on
// one LAN take to sync their first record when they find each other by
// mDNS alone (the default configuration), against the same with LAN
// discovery off and the address given by hand (Connect), in the same run.
// Each device runs in a network namespace of its own (a bridge between
// them, created and deleted here; root needed), as a child fedbench
// process driven over stdin. Both were paired first, and they listen on a
// fresh port at every start, so the addresses they remember are stale and
// only discovery (or the hand) can tell them where the other is. The time
// runs from the command that starts both nodes (open the store, listen) to
// the record's arrival; runs alternate; medians are compared.
func runDiscover(ctx context.Context, args []string) (result, error) {
	fs := newFlags("discover")
	n := fs.Int("n", 5, "runs of each kind")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n < 1 {
		return result{}, fmt.Errorf("bad -n %d", *n)
	}
	if err := netnstest.Usable(); err != nil {
		return result{}, err
	}
	lan, err := netnstest.Create(2, 99)
	if lan != nil {
		defer lan.Close()
	}
	if err != nil {
		return result{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	var nodes [2]*child
	for i := range nodes {
		dir, err := os.MkdirTemp("", "fedbench-discover")
		if err != nil {
			return result{}, err
		}
		defer os.RemoveAll(dir)
		if nodes[i], err = startChild(lan.Command(i, exe, discoverNodeArg, dir)); err != nil {
			return result{}, err
		}
		defer nodes[i].close()
	}
	a, b := nodes[0], nodes[1]
	progress("pairing the two devices")
	if err := pair(a, b); err != nil {
		return result{}, err
	}
	var disc, hand []float64
	for r := range *n {
		for _, kind := range []string{"mdns", "hand"} {
			d, err := syncRun(a, b, kind, fmt.Sprintf("k%d%s", r, kind))
			if err != nil {
				return result{}, fmt.Errorf("%s run %d: %w", kind, r, err)
			}
			progress("run %d %-5s first record after %v", r+1, kind, d.Round(time.Millisecond))
			if kind == "mdns" {
				disc = append(disc, d.Seconds())
			} else {
				hand = append(hand, d.Seconds())
			}
		}
	}
	ours, base := medianOf(disc), medianOf(hand)
	ratio := ours / base
	return result{
		Scenario: "discover", Ours: ours, Baseline: base, Unit: "s to the first synced record", Ratio: ratio,
		Target: "ratio <= 3", Pass: ratio <= 3,
		Extra: map[string]any{"runs": *n, "mdns_s": disc, "hand_s": hand},
	}, nil
}

// pair pairs b with a and waits for both to hold the mesh secret.
func pair(a, b *child) error {
	for _, c := range []*child{a, b} {
		if _, err := c.do("start on", "started"); err != nil {
			return err
		}
	}
	l, err := a.do("invite", "invite ")
	if err != nil {
		return err
	}
	if _, err := b.do("join "+strings.Fields(l)[1], "joined"); err != nil {
		return err
	}
	if _, err := b.do("put paired yes", "put "); err != nil {
		return err
	}
	if _, err := a.do("wait paired yes", "got "); err != nil {
		return err
	}
	for _, c := range []*child{a, b} {
		if _, err := c.do("ready", "ready"); err != nil {
			return err
		}
		if _, err := c.do("stop", "stopped"); err != nil {
			return err
		}
	}
	return nil
}

// syncRun starts both nodes (LAN discovery on for "mdns", off with a
// Connect for "hand"), writes key on a and returns how long until b holds
// it, counted from the start command.
func syncRun(a, b *child, kind, key string) (time.Duration, error) {
	mode := "on"
	if kind == "hand" {
		mode = "off"
	}
	t0 := time.Now()
	a.send("start " + mode)
	b.send("start " + mode)
	la, err := a.await("started")
	if err != nil {
		return 0, err
	}
	if _, err := b.await("started"); err != nil {
		return 0, err
	}
	if kind == "hand" {
		f := strings.Fields(la) // started <id> <addr>...
		b.send("connect " + f[2] + " " + f[1])
	}
	a.send("put " + key + " v")
	b.send("wait " + key + " v")
	if _, err := b.await("got " + key); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	for _, c := range []*child{a, b} {
		if _, err := c.do("stop", "stopped"); err != nil {
			return 0, err
		}
	}
	return d, nil
}

// child is a fedbench process running one node in a namespace.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startChild(cmd *exec.Cmd) (*child, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, in: in, lines: make(chan string, 256)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c, nil
}

func (c *child) send(line string) { _, _ = io.WriteString(c.in, line+"\n") }

// await returns the next line starting with prefix (lines before it that
// do not are dropped: acknowledgements of earlier commands).
func (c *child) await(prefix string) (string, error) {
	tm := time.NewTimer(60 * time.Second)
	defer tm.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("node process ended while waiting for %q", prefix)
			}
			if strings.HasPrefix(l, "fail ") {
				return "", fmt.Errorf("node: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		case <-tm.C:
			return "", fmt.Errorf("no %q within a minute", prefix)
		}
	}
}

func (c *child) do(cmd, want string) (string, error) {
	c.send(cmd)
	return c.await(want)
}

func (c *child) close() {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// discoverNodeArg runs fedbench as the node process of runDiscover.
const discoverNodeArg = "discover-node"

// runDiscoverNode is the node process: it opens a node on dir and obeys
// one command per line on stdin (see syncRun and pair), answering on
// stdout; "fail ..." reports an error.
func runDiscoverNode(dir string) {
	ctx := context.Background()
	out := make(chan string, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for l := range out {
			fmt.Println(l)
		}
	}()
	say := func(f string, a ...any) { out <- fmt.Sprintf(f, a...) }
	var node *federation.Node
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if err := nodeCommand(ctx, &node, dir, f, say); err != nil {
			say("fail %s: %v", f[0], err)
		}
	}
	if node != nil {
		_ = node.Close()
	}
	close(out)
	<-done
}

func nodeCommand(ctx context.Context, node **federation.Node, dir string, f []string, say func(string, ...any)) error {
	n := *node
	switch f[0] {
	case "start":
		cfg := federation.Config{Dir: dir}
		if f[1] == "off" {
			cfg.Discovery.LAN = federation.LANOff
		}
		var err error
		if n, err = federation.New(cfg); err != nil {
			return err
		}
		*node = n
		if err := n.Start(ctx); err != nil {
			return err
		}
		say("started %s %s", n.DeviceID(), n.Addrs()[0])
	case "invite":
		inv, err := n.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return true, nil }})
		if err != nil {
			return err
		}
		say("invite %s", inv.QR)
	case "join":
		if _, err := n.Join(ctx, f[1], federation.JoinOptions{}); err != nil {
			return err
		}
		say("joined")
	case "connect":
		id, err := federation.ParseDeviceID(f[2])
		if err != nil {
			return err
		}
		return n.Connect(ctx, f[1], id)
	case "ready":
		go func() {
			for {
				if st, err := n.Stats(ctx); err == nil && st.Discovery.Ready {
					say("ready")
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	case "put":
		if err := n.Put(ctx, "notes", f[1], []byte(f[2])); err != nil {
			return err
		}
		say("put %s", f[1])
	case "wait":
		go func(k, v string) {
			for {
				if got, err := n.Get(ctx, "notes", k); err == nil && string(got) == v {
					say("got %s", k)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(f[1], f[2])
	case "stop":
		if err := n.Close(); err != nil {
			return err
		}
		say("stopped")
	default:
		return fmt.Errorf("unknown command")
	}
	return nil
}
