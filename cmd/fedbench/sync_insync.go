package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// runInsync measures how long two devices that already hold the same n
// records take to establish that (dial, SyncHello both ways, CaughtUp with
// equal version vectors and equal roots on both sides), at a large n against
// a small one in the same run. Samples of the two sizes alternate; medians
// are compared. Cost that grows with the data set shows up in the ratio.
func runInsync(ctx context.Context, args []string) (result, error) {
	fs := newFlags("insync")
	n := fs.Int("n", 1000000, "records in the large pair")
	small := fs.Int("small", 1000, "records in the small pair (the baseline)")
	samples := fs.Int("samples", 15, "connections measured per size")
	valueLen := fs.Int("value", 1024, "value size in bytes")
	state := fs.String("state", "", "directory where prepared pairs are kept and reused (default: temporary ones, removed)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n <= 0 || *small <= 0 || *samples <= 0 {
		return result{}, errors.New("insync: -n, -small and -samples must be positive")
	}
	large, err := preparePair(ctx, "insync large", *state, *n, *valueLen)
	if err != nil {
		return result{}, err
	}
	defer large.close()
	base, err := preparePair(ctx, "insync small", *state, *small, *valueLen)
	if err != nil {
		return result{}, err
	}
	defer base.close()
	var ls, ss []float64
	for i := 0; i < *samples; i++ {
		for _, k := range []struct {
			pair *syncPair
			out  *[]float64
		}{{base, &ss}, {large, &ls}} {
			d, err := measureInsync(ctx, k.pair)
			if err != nil {
				return result{}, fmt.Errorf("sample %d: %w", i+1, err)
			}
			*k.out = append(*k.out, ms(d))
		}
		if (i+1)%5 == 0 || i+1 == *samples {
			progress("insync: %d/%d  median so far: n=%d %.2f ms, n=%d %.2f ms", i+1, *samples, *n, medianOf(ls), *small, medianOf(ss))
		}
	}
	o, bl := medianOf(ls), medianOf(ss)
	ratio := o / bl
	return result{
		Scenario: "insync", Ours: o, Baseline: bl, Unit: "ms", Ratio: ratio,
		Target: "ratio <= 1.5", Pass: ratio <= 1.5,
		Extra: map[string]any{"n": *n, "small": *small, "samples": *samples, "large_ms": ls, "small_ms": ss},
	}, nil
}

// measureInsync connects B to A and returns the time until each side has
// received the other's CaughtUp at the common version vector; receiving it
// compares the roots, and a difference would start a repair (checked).
func measureInsync(ctx context.Context, p *syncPair) (time.Duration, error) {
	a, b := p.a, p.b
	vv, err := a.store.VersionVector(ctx)
	if err != nil {
		return 0, err
	}
	if ok, err := sameState(ctx, a, b); err != nil || !ok {
		return 0, fmt.Errorf("pair not in sync before connecting (err %v)", err)
	}
	start := time.Now()
	if err := reconnect(ctx, a, b); err != nil {
		return 0, err
	}
	deadline := start.Add(30 * time.Second)
	for !announced(a.node.Peers(), vv) || !announced(b.node.Peers(), vv) {
		if time.Now().After(deadline) {
			return 0, errors.New("no CaughtUp at the common version")
		}
		time.Sleep(50 * time.Microsecond)
	}
	took := time.Since(start)
	ps := sumPeers(a.node.Peers())
	ps2 := sumPeers(b.node.Peers())
	if ps.Repairs+ps2.Repairs > 0 || ps.ChangesSent+ps2.ChangesSent > 0 {
		return 0, fmt.Errorf("in-sync pair exchanged changes (%d) or repaired (%d)", ps.ChangesSent+ps2.ChangesSent, ps.Repairs+ps2.Repairs)
	}
	return took, disconnect(ctx, a, b)
}
