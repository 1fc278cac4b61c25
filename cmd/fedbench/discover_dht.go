package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/discovery/dht/dhttest"
)

// runDiscoverDHT is the internet counterpart of runDiscover, on loopback
// (no root): two paired devices whose only discovery is a DHT (a network of
// -dht nodes on 127.0.0.1, LAN discovery off) start together on fresh ports,
// so every address they remember is stale; the time runs from the start of
// both nodes to the first record one wrote arriving at the other. Baseline:
// the same with the DHT off and the address given by hand (Connect right
// after Start). Runs alternate; medians are compared. The DHT figure
// includes joining the DHT, publishing and one lookup with the default
// intervals (lookups 2 s, 4 s, ... apart after the start).
func runDiscoverDHT(ctx context.Context, args []string) (result, error) {
	fs := newFlags("discover-dht")
	n := fs.Int("n", 5, "runs of each kind")
	size := fs.Int("dht", 8, "DHT nodes on loopback")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n < 1 || *size < 2 {
		return result{}, fmt.Errorf("bad -n %d or -dht %d", *n, *size)
	}
	nw, err := dhttest.New(*size)
	if err != nil {
		return result{}, fmt.Errorf("loopback DHT: %w", err)
	}
	defer nw.Close()
	var dirs [2]string
	for i := range dirs {
		if dirs[i], err = os.MkdirTemp("", "fedbench-discover-dht"); err != nil {
			return result{}, err
		}
		defer os.RemoveAll(dirs[i])
	}
	open := func(i int, dhtOn bool) (*federation.Node, error) {
		cfg := federation.Config{Dir: dirs[i], Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
			Discovery: federation.DiscoveryConfig{LAN: federation.LANOff}}
		if dhtOn {
			cfg.Discovery.DHT = federation.DHTConfig{Bootstrap: nw.Bootstrap(), Listen: "127.0.0.1:0"}
		}
		nd, err := federation.New(cfg)
		if err != nil {
			return nil, err
		}
		if err := nd.Start(ctx); err != nil {
			_ = nd.Close()
			return nil, err
		}
		return nd, nil
	}
	waitGet := func(nd *federation.Node, key, want string, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for {
			if v, err := nd.Get(ctx, "notes", key); err == nil && string(v) == want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s after %v", key, limit)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// Pair once (with the DHT on, as a user would run).
	progress("discover-dht: pairing two devices; a DHT of %d nodes on loopback", *size)
	a, err := open(0, true)
	if err != nil {
		return result{}, err
	}
	b, err := open(1, true)
	if err != nil {
		_ = a.Close()
		return result{}, err
	}
	inv, err := a.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return true, nil }})
	if err == nil {
		_, err = b.Join(ctx, inv.QR, federation.JoinOptions{})
	}
	if err == nil {
		err = a.Put(ctx, "notes", "paired", []byte("x"))
	}
	if err == nil {
		err = waitGet(b, "paired", "x", time.Minute)
	}
	for deadline := time.Now().Add(time.Minute); err == nil; {
		sa, ea := a.MeshSecret()
		sb, eb := b.MeshSecret()
		if ea == nil && eb == nil && sa.Generation == sb.Generation {
			break
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("no common mesh secret: %v %v", ea, eb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	idA := a.DeviceID()
	_ = a.Close()
	_ = b.Close()
	if err != nil {
		return result{}, fmt.Errorf("pairing: %w", err)
	}

	run := func(k int, dhtOn bool) (time.Duration, error) {
		key := fmt.Sprintf("k%d", k)
		t0 := time.Now()
		type opened struct {
			nd  *federation.Node
			err error
		}
		ch := make(chan opened, 1)
		go func() { nd, err := open(1, dhtOn); ch <- opened{nd, err} }()
		a, err := open(0, dhtOn)
		ob := <-ch
		if a != nil {
			defer a.Close()
		}
		if ob.nd != nil {
			defer ob.nd.Close()
		}
		if err != nil || ob.err != nil {
			return 0, fmt.Errorf("open: %v %v", err, ob.err)
		}
		if err := a.Put(ctx, "notes", key, []byte("v")); err != nil {
			return 0, err
		}
		if !dhtOn {
			_ = ob.nd.Connect(ctx, a.Addr(), idA) // on failure the node keeps redialling
		}
		if err := waitGet(ob.nd, key, "v", time.Minute); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	var ours, base []float64
	for k := range *n {
		for _, dhtOn := range []bool{false, true} {
			d, err := run(2*k+map[bool]int{false: 0, true: 1}[dhtOn], dhtOn)
			if err != nil {
				return result{}, fmt.Errorf("run %d (dht %v): %w", k, dhtOn, err)
			}
			name := "hand"
			if dhtOn {
				name, ours = "dht", append(ours, d.Seconds())
			} else {
				base = append(base, d.Seconds())
			}
			progress("run %d %-4s first record after %v", k, name, d.Round(time.Millisecond))
		}
	}
	mo, mb := dhtMedian(ours), dhtMedian(base)
	return result{
		Scenario: "discover-dht", Ours: mo, Baseline: mb, Unit: "s to the first synced record",
		Ratio: mo / mb, Target: "ratio <= 3 (the LAN target, for comparison)", Pass: mo/mb <= 3,
		Extra: map[string]any{"dht_s": ours, "hand_s": base, "runs": *n, "dht_nodes": *size},
	}, nil
}

// dhtMedian returns the median of xs.
func dhtMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
