package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// The merge scenario measures conflict resolution through a node's real
// apply path. Two nodes on the in-memory store and transport each write n
// records while disconnected; on connecting, each receives the other's n
// changes and applies them. When both wrote the same n keys every incoming
// change is a concurrent version that the collection's resolver must
// settle (n conflicts on each node); in the baseline the nodes write
// disjoint keys, so the same number of changes applies plainly. The clock
// runs from Connect until both nodes hold equal version vectors and equal
// Merkle roots. Rates count the changes one node applies per second; both
// nodes work in parallel and symmetrically.

const (
	mergeLWWColl   = "bench-lww" // given conflict.LWW{} in mergeNode
	mergeChronColl = federation.CollectionConversation
	mergeTxn       = 1000
)

// mergeStrategy is one resolver under test and how its values are made.
type mergeStrategy struct {
	name  string
	coll  string
	value func(dev core.DeviceID, key string, i int, ts core.Timestamp) []byte
}

func mergeStrategies(valueLen int) []mergeStrategy {
	pad := make([]byte, valueLen)
	for i := range pad {
		pad[i] = byte('a' + i%26)
	}
	return []mergeStrategy{
		{name: "lww", coll: mergeLWWColl, value: func(dev core.DeviceID, _ string, i int, _ core.Timestamp) []byte {
			v := append([]byte(nil), pad...)
			copy(v, fmt.Sprintf("%s-%d", dev.Short(), i))
			return v
		}},
		{name: "chronological", coll: mergeChronColl, value: func(dev core.DeviceID, key string, i int, ts core.Timestamp) []byte {
			var l crdt.Log
			// A message id unique per device, so two logs merge into two
			// messages; the body is the padding.
			_ = l.Append(crdt.Message{ID: dev.Short() + "/" + key, Time: ts, Device: dev, Body: pad})
			return l.Encode()
		}},
	}
}

// mergeRun is one timed convergence of two nodes.
type mergeRun struct {
	elapsed   time.Duration
	conflicts uint64 // resolved, summed over both nodes
}

func runMerge(ctx context.Context, args []string) (result, error) {
	fs := newFlags("merge")
	n := fs.Int("n", 100000, "records each node writes while disconnected (conflicting pairs)")
	valueLen := fs.Int("value", 64, "payload bytes per record")
	limit := fs.Duration("limit", 10*time.Minute, "give up on one convergence after this long")
	rounds := fs.Int("rounds", 3, "timed runs of each kind; the fastest counts (the order alternates)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *n <= 0 || *valueLen < 16 || *rounds < 1 {
		return result{}, errors.New("need -n > 0, -value >= 16 and -rounds >= 1")
	}
	res := result{Scenario: "merge", Unit: "changes/s", Target: "ratio >= 0.3", Extra: map[string]any{
		"n": *n, "value_bytes": *valueLen, "rounds": *rounds,
		"rate": "changes one node applies per second, both nodes in parallel: n / time from Connect to equal version vectors and Merkle roots",
	}}
	worst := math.Inf(1)
	// An untimed warm-up, so that the first timed run does not pay for
	// the process's heap growth alone.
	for _, s := range mergeStrategies(*valueLen) {
		if _, err := mergeOnce(ctx, s, min(*n, 5000), true, *limit); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	for _, s := range mergeStrategies(*valueLen) {
		plain, conf, err := mergeBest(ctx, s, *n, *rounds, *limit)
		if err != nil {
			return result{}, err
		}
		plainRate := float64(*n) / plain.elapsed.Seconds()
		confRate := float64(*n) / conf.elapsed.Seconds()
		ratio := confRate / plainRate
		progress("merge %s: %.0f conflicts/s vs %.0f plain changes/s: ratio %.3f", s.name, confRate, plainRate, ratio)
		res.Extra[s.name+"_conflicts_per_s"] = math.Round(confRate)
		res.Extra[s.name+"_plain_changes_per_s"] = math.Round(plainRate)
		res.Extra[s.name+"_ratio"] = math.Round(ratio*1000) / 1000
		res.Extra[s.name+"_conflicts_resolved"] = conf.conflicts
		res.Extra[s.name+"_seconds"] = conf.elapsed.Seconds()
		res.Extra[s.name+"_plain_seconds"] = plain.elapsed.Seconds()
		if ratio < worst {
			worst = ratio
			res.Ours, res.Baseline, res.Ratio = confRate, plainRate, ratio
			res.Extra["worst"] = s.name
		}
	}
	res.Pass = res.Ratio >= 0.3
	return res, nil
}

// mergeBest runs the plain and the conflicting case rounds times each,
// alternating which goes first, and returns the fastest run of each.
func mergeBest(ctx context.Context, s mergeStrategy, n, rounds int, limit time.Duration) (plain, conf mergeRun, err error) {
	for r := range rounds {
		for _, conflicting := range []bool{r%2 == 1, r%2 == 0} {
			run, err := mergeOnce(ctx, s, n, conflicting, limit)
			if err != nil {
				return plain, conf, err
			}
			best := &plain
			if conflicting {
				best = &conf
				if run.conflicts < uint64(2*n) {
					return plain, conf, fmt.Errorf("%s: %d conflicts resolved for %d concurrent pairs on two nodes", s.name, run.conflicts, n)
				}
			}
			if best.elapsed == 0 || run.elapsed < best.elapsed {
				*best = run
			}
		}
	}
	return plain, conf, nil
}

// mergeOnce builds two fresh nodes, fills them while disconnected (the
// same keys when conflicting, disjoint keys otherwise), connects them and
// times convergence.
func mergeOnce(ctx context.Context, s mergeStrategy, n int, conflicting bool, limit time.Duration) (mergeRun, error) {
	label := fmt.Sprintf("merge %s plain", s.name)
	if conflicting {
		label = fmt.Sprintf("merge %s conflicts", s.name)
	}
	net := transport.NewMemNetwork()
	nodes := make([]*federation.Node, 2)
	stores := make([]*memstore.Store, 2)
	for i := range nodes {
		stores[i] = memstore.New()
		node, err := mergeNode(ctx, net, stores[i], i)
		if err != nil {
			return mergeRun{}, fmt.Errorf("%s: %w", label, err)
		}
		defer node.Close()
		nodes[i] = node
	}
	a, b := nodes[0], nodes[1]
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	for i, node := range nodes {
		prefix := "k"
		if !conflicting {
			prefix = fmt.Sprintf("n%d-k", i)
		}
		if err := mergeFill(ctx, node, s, prefix, n); err != nil {
			return mergeRun{}, fmt.Errorf("%s: fill node %d: %w", label, i, err)
		}
	}
	progress("%s: both nodes hold %d records; connecting", label, n)
	start := time.Now()
	if err := a.Connect(ctx, b.Addr(), b.DeviceID()); err != nil {
		return mergeRun{}, fmt.Errorf("%s: connect: %w", label, err)
	}
	if err := mergeWait(ctx, label, [2]*federation.Node{a, b}, [2]*memstore.Store(stores), start, limit); err != nil {
		return mergeRun{}, err
	}
	run := mergeRun{elapsed: time.Since(start)}
	// The session counters are bumped just after a batch commits, so
	// they may trail convergence a little (untimed).
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		run.conflicts = 0
		for _, node := range nodes {
			for _, p := range node.Peers() {
				run.conflicts += p.Conflicts
			}
		}
		if !conflicting || run.conflicts >= uint64(2*n) || time.Now().After(deadline) {
			break
		}
	}
	progress("%s: converged in %.3fs, %d conflicts resolved", label, run.elapsed.Seconds(), run.conflicts)
	if conflicting {
		if err := mergeCheck(ctx, s, a, b); err != nil {
			return mergeRun{}, fmt.Errorf("%s: %w", label, err)
		}
	}
	return run, nil
}

// mergeNode starts node i on the in-memory store and transport, with a
// real last-writer-wins policy for mergeLWWColl and the default policy
// table (chronological merge for conversations) otherwise.
func mergeNode(ctx context.Context, net *transport.MemNetwork, st *memstore.Store, i int) (*federation.Node, error) {
	pols := federation.DefaultPolicies()
	pols[mergeLWWColl] = federation.Policy{Priority: federation.PriorityMedium, Mode: federation.ModeImmediate, Resolver: conflict.LWW{}}
	node, err := federation.New(federation.Config{
		Store:       st,
		Device:      federation.DeviceConfig{Name: fmt.Sprintf("bench-%d", i), Type: "desktop"},
		Collections: pols,
		Logger:      mergeLogger(),
		Network: federation.NetworkConfig{Transport: func(_ context.Context, p federation.TransportParams) (federation.Transport, error) {
			return net.ListenConfig(transport.MemConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, Logger: p.Logger})
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := node.Start(ctx); err != nil {
		_ = node.Close()
		return nil, err
	}
	return node, nil
}

// mergeLogger logs at debug level to stderr when FED_DEBUG is set.
func mergeLogger() *slog.Logger {
	if os.Getenv("FED_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mergeFill writes n records under prefix, mergeTxn per transaction.
func mergeFill(ctx context.Context, node *federation.Node, s mergeStrategy, prefix string, n int) error {
	dev := node.DeviceID()
	base := time.Now().UnixMilli()
	for i := 0; i < n; i += mergeTxn {
		end := min(i+mergeTxn, n)
		err := node.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < end; j++ {
				key := fmt.Sprintf("%s%09d", prefix, j)
				ts := core.MakeTimestamp(base, uint16(j))
				if err := tx.Put(s.coll, key, s.value(dev, key, j, ts)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// mergeWait polls until both nodes hold equal version vectors and Merkle
// roots, printing progress every few seconds. It reads the version vectors
// from the stores: Node.Stats also counts every record, which at this size
// would cost the nodes more CPU than the poll is worth.
func mergeWait(ctx context.Context, label string, nodes [2]*federation.Node, stores [2]*memstore.Store, start time.Time, limit time.Duration) error {
	last := time.Now()
	for {
		va, err := stores[0].VersionVector(ctx)
		if err != nil {
			return err
		}
		vb, err := stores[1].VersionVector(ctx)
		if err != nil {
			return err
		}
		if va.Compare(vb) == core.Equal && rootsText(nodes[0].Roots()) == rootsText(nodes[1].Roots()) {
			return nil
		}
		if time.Since(start) > limit {
			return fmt.Errorf("%s: not converged after %v", label, limit)
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			progress("%s: %d and %d changes held after %.1fs", label, vvTotal(va), vvTotal(vb), time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// mergeCheck confirms on one key that the resolver, not a plain overwrite,
// produced the outcome: the chronological merge holds both devices'
// messages, last-writer-wins holds one device's value whole.
func mergeCheck(ctx context.Context, s mergeStrategy, a, b *federation.Node) error {
	key := fmt.Sprintf("k%09d", 0)
	va, err := a.Get(ctx, s.coll, key)
	if err != nil {
		return err
	}
	vb, err := b.Get(ctx, s.coll, key)
	if err != nil {
		return err
	}
	if string(va) != string(vb) {
		return fmt.Errorf("%s: the nodes hold different values", key)
	}
	if s.coll != mergeChronColl {
		return nil
	}
	l, err := crdt.DecodeLog(va)
	if err != nil {
		return err
	}
	if l.Len() != 2 {
		return fmt.Errorf("%s: merged log holds %d messages, want 2", key, l.Len())
	}
	return nil
}
