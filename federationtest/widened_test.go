package federationtest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/federationtest"
)

// The widened generator. Besides the random writes, deletes, transactions,
// partitions, restarts, compactions and frame faults of the original, it
// makes, at random:
//
//   - the same key written on every device within one HLC millisecond
//     (every clock frozen at one instant: the versions differ only in
//     their counters and origins);
//   - a delete racing an update of the same key on two devices;
//   - a key re-created after its deletion;
//   - occasionally a transaction of 20,000+ changes racing small writes
//     on every device (its own included);
//   - restarts from the node's store (its libSQL file in the file variant);
//   - in one seed of four, one device whose clock is off by ±24 h for
//     the whole seed (FED_SKEW=0 turns it off);
//
// over every built-in collection with its real value format (profile
// fields, conversation logs, personality averages, embeddings, analytics
// events, media blobs) and one custom collection per built-in resolver
// (LWW, field merge, chronological, weighted average, vector merge, union,
// manual); the local-only cache must never leave its device. After healing, every node must hold identical records (value,
// tombstone, timestamp, origin, sequence, causal context: full scans, not
// only roots) and every acknowledged write must be accounted for by its
// collection's semantics (see checkAccounted).

// kind is the value format and merge semantics of a collection.
type kind int

const (
	kOpaque  kind = iota // last-writer-wins, opaque bytes
	kManual              // opaque bytes, conflicts settled by the host
	kProfile             // conflict.ProfileSet fields, last-writer-wins per field
	kLog                 // crdt.Log messages, chronological union
	kAverage             // crdt.Average contributions, weighted mean
	kVector              // conflict.Embedding, dedupe by content, later content wins
	kUnion               // conflict.EventsAppend events, union
	kCache               // opaque bytes that never leave their device
)

type collSpec struct {
	name string
	kind kind
}

var wideColls = []collSpec{
	{"notes", kOpaque},
	{federation.CollectionMedia, kOpaque},
	{federation.CollectionProfile, kProfile},
	{federation.CollectionConversation, kLog},
	{federation.CollectionPersonality, kAverage},
	{federation.CollectionEmbeddings, kVector},
	{federation.CollectionAnalytics, kUnion},
	{federation.CollectionCache, kCache},
	{"custom-lww", kOpaque},
	{"custom-manual", kManual},
	{"custom-fields", kProfile},
	{"custom-chrono", kLog},
	{"custom-average", kAverage},
	{"custom-vector", kVector},
	{"custom-union", kUnion},
}

// customPolicies gives each custom collection its resolver.
func customPolicies() map[string]federation.Policy {
	r := map[kind]core.Resolver{
		kOpaque: conflict.LWW{}, kManual: conflict.Manual{}, kProfile: conflict.FieldMerge{},
		kLog: conflict.Chronological{}, kAverage: conflict.WeightedAverage{}, kVector: conflict.VectorMerge{},
		kUnion: conflict.Union{},
	}
	out := map[string]federation.Policy{}
	for _, c := range wideColls {
		if strings.HasPrefix(c.name, "custom-") {
			out[c.name] = federation.Policy{Priority: federation.PriorityMedium, Mode: federation.ModeImmediate, Resolver: r[c.kind]}
		}
	}
	// Analytics travel as written here (their default is periodic: one
	// batch a minute); the test is about merging.
	a := federation.DefaultPolicies()[federation.CollectionAnalytics]
	a.Mode = federation.ModeImmediate
	out[federation.CollectionAnalytics] = a
	return out
}

// deletable reports whether the generator deletes keys of a kind. Field
// profiles and averages are only edited: a deleted average restarts a
// device's versioned contribution, which is not what "include every
// contribution" can check.
//
// Deleting keys of the join collections (logs, unions, embeddings) is on
// unless FED_JOIN_DELETES=0: it diverges on this branch (see
// wideRegressions), and the switch lets the other findings be told apart.
func (k kind) deletable() bool {
	switch k {
	case kProfile, kAverage:
		return false
	case kLog, kUnion, kVector:
		return os.Getenv("FED_JOIN_DELETES") != "0"
	}
	return true
}

// ack is one acknowledged write: the Update that made it returned nil.
type ack struct {
	node      int
	coll      string
	key       string
	value     []byte // the value written (nil for a delete)
	deleted   bool
	elem      string         // kLog, kUnion: the entry it added
	field     string         // kProfile: the field it set
	fieldVal  string         // kProfile: the value it set
	fieldTS   core.Timestamp // kProfile: the field's stamp
	fieldDev  core.DeviceID  // kProfile: the field's device
	sample    []float64      // kAverage: the sample it added (weight 1)
	content   [32]byte       // kVector: content hash
	resolving bool           // kManual: the host's resolution
}

type wideRun struct {
	t    *testing.T
	m    *federationtest.Mesh
	rng  *rand.Rand
	seed uint64
	n    int

	mu   sync.Mutex
	acks []ack
	big  int // changes in big transactions
}

func (w *wideRun) addAck(a ack) {
	w.mu.Lock()
	w.acks = append(w.acks, a)
	w.mu.Unlock()
}

func (w *wideRun) key() string { return fmt.Sprintf("k%d", w.rng.IntN(6)) }

// write makes one random write of coll's format on node i to key, in its
// own transaction (a read-modify-write for the merged formats), and
// records it when acknowledged. uniq makes the written content unique.
func (w *wideRun) write(ctx context.Context, i int, c collSpec, key string, del bool, uniq string, sample []float64, sameContent bool) error {
	node := w.m.Node(i)
	dev := node.DeviceID()
	a := ack{node: i, coll: c.name, key: key, deleted: del}
	err := node.Update(ctx, func(tx *federation.Tx) error {
		a.value, a.elem, a.field = nil, "", ""
		if del {
			return tx.Delete(c.name, key)
		}
		old, err := tx.Get(c.name, key)
		if err != nil && !errors.Is(err, federation.ErrNotFound) && (c.kind != kOpaque || !errors.Is(err, federation.ErrNotFetched)) {
			return err
		}
		var v []byte
		switch c.kind {
		case kOpaque, kManual, kCache:
			v = []byte(uniq)
		case kProfile:
			ts, err := node.Now()
			if err != nil {
				return err
			}
			a.field, a.fieldVal, a.fieldTS, a.fieldDev = fmt.Sprintf("f%d", len(uniq)%3), uniq, ts, dev
			if v, err = conflict.ProfileSet(old, a.field, uniq, ts, dev); err != nil {
				return err
			}
		case kLog:
			l, err := crdt.DecodeLog(old)
			if err != nil {
				return err
			}
			ts, err := node.Now()
			if err != nil {
				return err
			}
			if err := l.Append(crdt.Message{ID: uniq, Time: ts, Device: dev, Body: []byte("body " + uniq)}); err != nil {
				return err
			}
			a.elem, v = uniq, l.Encode()
		case kAverage:
			avg, err := crdt.DecodeAverage(old)
			if err != nil {
				return err
			}
			if avg.Dim() == 0 {
				avg = crdt.NewAverage(len(sample))
			}
			if err := avg.Add(dev, sample, 1); err != nil {
				return err
			}
			a.sample, v = sample, avg.Encode()
		case kVector:
			text := uniq
			if sameContent {
				text = "shared " + key
			}
			ts, err := node.Now()
			if err != nil {
				return err
			}
			e := conflict.Embedding{Vector: []float32{float32(len(text)), 1, float32(sample[0])}, ContentHash: sha256.Sum256([]byte(text)), Model: "m", Time: ts, Device: dev}
			a.content = e.ContentHash
			if v, err = e.Encode(); err != nil {
				return err
			}
		case kUnion:
			if v, err = conflict.EventsAppend(old, []byte(uniq)); err != nil {
				return err
			}
			a.elem = uniq
		}
		a.value = v
		return tx.Put(c.name, key, v)
	})
	if err != nil {
		return fmt.Errorf("node %d: write %s/%s: %w", i, c.name, key, err)
	}
	w.addAck(a)
	return nil
}

func (w *wideRun) randomWrite(ctx context.Context, i int, c collSpec, key string, step, sub int) error {
	return w.plan(i, c, key, step, sub)(ctx)
}

// plan draws a random write's choices now (from the seed's generator,
// which is not safe for concurrent use) and returns the write, to run
// later, possibly on another goroutine.
func (w *wideRun) plan(i int, c collSpec, key string, step, sub int) func(context.Context) error {
	del := c.kind.deletable() && w.rng.IntN(5) == 0
	uniq := fmt.Sprintf("s%d-%d-%d-n%d", w.seed, step, sub, i)
	sample := []float64{float64(w.rng.IntN(10)), float64(w.rng.IntN(3))}
	same := w.rng.IntN(3) == 0
	return func(ctx context.Context) error { return w.write(ctx, i, c, key, del, uniq, sample, same) }
}

// parallel runs fns at once and joins their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// wideVariant selects the store and network of a run.
type wideVariant struct {
	libSQL, quic bool
	bigEvery     int // one seed in bigEvery makes a 20,000+ change transaction
}

func runWideSeed(t *testing.T, seed uint64, v wideVariant) (federationtest.FaultCounts, error) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0x5eed^0x77))
	n := 3 + rng.IntN(3)
	// Its own generator, as skew's below: one seed in four gives every
	// device but node 0 the on-demand policy for media (FED_PARTIAL=0:
	// never), checked by digest against the values written.
	partial := os.Getenv("FED_PARTIAL") != "0" && rand.New(rand.NewPCG(seed, 0x9a27)).IntN(4) == 0
	m := federationtest.NewMesh(t, n, federationtest.Options{
		Seed:   seed,
		Faults: federationtest.Faults{Drop: 0.05, Duplicate: 0.05, Reorder: 0.05},
		LibSQL: v.libSQL,
		QUIC:   v.quic,
		Config: func(i int, c *federation.Config) {
			c.Collections = customPolicies()
			if partial && i != 0 {
				// Selective sync: media (last-writer-wins) travels as
				// stubs from these devices, which keep what others
				// write as stubs too; node 0 wants every value.
				c.Collections[federation.CollectionMedia] = federation.Policy{Priority: federation.PriorityLow, Mode: federation.ModeOnDemand, Resolver: conflict.LWW{}}
			}
		},
		// Shown when the seed fails to converge (most runs log little).
		LogRing: 400,
	})
	w := &wideRun{t: t, m: m, rng: rng, seed: seed, n: n}
	// Its own generator, so that turning skew on or off leaves every other
	// choice of the seed as it was (and wideRegressions' seeds replayable).
	if sk := rand.New(rand.NewPCG(seed, 0x5c3e)); os.Getenv("FED_SKEW") != "0" && sk.IntN(4) == 0 {
		d := 24 * time.Hour
		if sk.IntN(2) == 0 {
			d = -d
		}
		m.SetClockOffset(sk.IntN(n), d)
	}
	stop := m.KeepConnected(5 * time.Millisecond)
	defer stop()
	pick := func() collSpec { return wideColls[rng.IntN(len(wideColls))] }
	var deletables []collSpec
	for _, c := range wideColls {
		if c.kind.deletable() {
			deletables = append(deletables, c)
		}
	}
	bigStep := -1
	if v.bigEvery > 0 && rng.IntN(v.bigEvery) == 0 {
		bigStep = rng.IntN(30)
	}
	steps := 40 + rng.IntN(40)
	for step := 0; step < steps; step++ {
		i := rng.IntN(n)
		var err error
		switch x := rng.IntN(100); {
		case step == bigStep:
			err = w.bigRace(ctx, step)
		case x < 30:
			err = w.randomWrite(ctx, i, pick(), w.key(), step, 0)
		case x < 40:
			// Several writes in one transaction, across collections.
			err = w.m.Node(i).Update(ctx, func(tx *federation.Tx) error {
				for j := 0; j < 2+rng.IntN(5); j++ {
					c := wideColls[rng.IntN(2)] // opaque ones: their values are known
					k, val := w.key(), fmt.Sprintf("t%d-%d-%d-n%d", seed, step, j, i)
					if err := tx.Put(c.name, k, []byte(val)); err != nil {
						return err
					}
				}
				return nil
			})
			if err == nil {
				w.ackTxn(ctx, i, step)
			}
		case x < 47:
			// The same key on every device within one HLC millisecond.
			c, k := pick(), w.key()
			m.FreezeClocks()
			fns := make([]func() error, n)
			for j := range n {
				write := w.plan(j, c, k, step, j)
				fns[j] = func() error { return write(ctx) }
			}
			err = parallel(fns...)
			m.ThawClocks()
		case x < 54:
			// A delete racing an update of the same key.
			c := deletables[rng.IntN(len(deletables))]
			k := w.key()
			a, b := rng.IntN(n), rng.IntN(n-1)
			if b >= a {
				b++
			}
			err = parallel(
				func() error { return w.write(ctx, a, c, k, true, "", nil, false) },
				func() error {
					return w.write(ctx, b, c, k, false, fmt.Sprintf("u%d-%d-n%d", seed, step, b), []float64{1, 1}, false)
				})
		case x < 59:
			// Re-create after a delete, possibly on another device.
			c := deletables[rng.IntN(len(deletables))]
			k := w.key()
			if err = w.write(ctx, i, c, k, true, "", nil, false); err == nil {
				err = w.write(ctx, rng.IntN(n), c, k, false, fmt.Sprintf("r%d-%d", seed, step), []float64{2, 0}, false)
			}
		case x < 67:
			perm := rng.Perm(n)
			cut := 1 + rng.IntN(n-1)
			m.Partition(perm[:cut], perm[cut:])
		case x < 74:
			m.Heal()
		case x < 77:
			m.Restart(i)
		case x < 80:
			st := m.Store(i)
			vv, verr := st.VersionVector(ctx)
			if verr == nil {
				_, err = st.Truncate(ctx, vv)
			}
		case x < 84:
			m.SetFaults(rng.IntN(2) == 0)
		default:
			err = w.randomWrite(ctx, i, pick(), w.key(), step, 0)
		}
		if err != nil {
			return m.Injected(), fmt.Errorf("step %d: %w", step, err)
		}
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
	}
	m.SetFaults(false)
	m.ThawClocks()
	m.Heal()
	patience := 30 * time.Second
	if w.big > 0 {
		// 20,000+ changes into every other device's store (a libSQL file,
		// or memory under -race), on two busy cores, can take longer than
		// that: seed 1 in memory took 43 s under -race at load 15.
		patience = 90 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if err := w.settle(wctx); err != nil {
		if i := strings.Index(err.Error(), "record \""); i >= 0 {
			ck := strings.SplitN(err.Error()[i+8:], "\"", 2)[0]
			if c, k, ok := strings.Cut(ck, "/"); ok {
				t.Log(history(m, c, k))
			}
		}
		t.Logf("seed %d, state at failure:\n%s", seed, m.Diagnose(ctx))
		return m.Injected(), err
	}
	if err := w.checkAccounted(ctx); err != nil {
		if c, rest, ok := strings.Cut(err.Error(), "/"); ok {
			k, _, _ := strings.Cut(rest, ":")
			t.Log(history(m, c, k))
		}
		t.Logf("seed %d, state at failure:\n%s", seed, m.Diagnose(ctx))
		return m.Injected(), err
	}
	if partial {
		// settle compared every stub with node 0's version by digest;
		// say how many there were.
		stubs := 0
		for i := range n {
			snap, err := m.Snapshot(ctx, i)
			if err != nil {
				return m.Injected(), err
			}
			for _, r := range snap.Records {
				if r.Stub {
					stubs++
				}
			}
		}
		t.Logf("seed %d: media on-demand on %d of %d devices: %d stubs, all matching the values written", seed, n-1, n, stubs)
	}
	return m.Injected(), nil
}

// ackTxn records the opaque writes of the multi-write transaction just
// made on node i (its values are read back from the recorder: they are
// prefixed t<seed>-<step>-).
func (w *wideRun) ackTxn(_ context.Context, i, step int) {
	prefix := fmt.Sprintf("t%d-%d-", w.seed, step)
	for _, r := range w.m.Recorder(i).Local() {
		if strings.HasPrefix(string(r.Value), prefix) && strings.HasSuffix(string(r.Value), fmt.Sprintf("-n%d", i)) {
			w.addAck(ack{node: i, coll: r.Collection, key: r.Key, value: r.Value})
		}
	}
}

// bigRace commits a transaction of 20,000+ changes on one device while
// every device (that one included) makes small writes.
func (w *wideRun) bigRace(ctx context.Context, step int) error {
	size := 20000 + w.rng.IntN(2000)
	bigNode := w.rng.IntN(w.n)
	type small struct {
		i    int
		c    collSpec
		k    string
		uniq string
	}
	var smalls []small
	for j := 0; j < 3*w.n; j++ {
		smalls = append(smalls, small{j % w.n, wideColls[w.rng.IntN(len(wideColls))], w.key(), fmt.Sprintf("b%d-%d-%d-n%d", w.seed, step, j, j%w.n)})
	}
	fns := []func() error{func() error {
		err := w.m.Node(bigNode).Update(ctx, func(tx *federation.Tx) error {
			for j := range size {
				// A few keys that small writes race on, the rest fresh.
				k := fmt.Sprintf("big-%05d", j)
				if j < 6 {
					k = fmt.Sprintf("k%d", j)
				}
				if err := tx.Put("notes", k, []byte(fmt.Sprintf("big%d-%d-%d-n%d", w.seed, step, j, bigNode))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("big transaction: %w", err)
		}
		for j := range size {
			k := fmt.Sprintf("big-%05d", j)
			if j < 6 {
				k = fmt.Sprintf("k%d", j)
			}
			w.addAck(ack{node: bigNode, coll: "notes", key: k, value: []byte(fmt.Sprintf("big%d-%d-%d-n%d", w.seed, step, j, bigNode))})
		}
		w.mu.Lock()
		w.big += size
		w.mu.Unlock()
		return nil
	}}
	for _, s := range smalls {
		fns = append(fns, func() error {
			return w.write(ctx, s.i, s.c, s.k, false, s.uniq, []float64{3, 3}, false)
		})
	}
	return parallel(fns...)
}

// settle waits until the mesh converges, settling the manual collection's
// conflicts as a host would: one device at a time resolves what it holds
// (keeping the last writer's value), and the resolution travels.
//
// Equal version vectors with records that still differ after stuckAfter
// fail at once instead of waiting for ctx: nothing is in flight then, and
// a failing seed should not cost the whole timeout.
func (w *wideRun) settle(ctx context.Context) error {
	const stuckAfter = 8 * time.Second
	var stuckSince time.Time
	for {
		err := w.m.Converged(context.WithoutCancel(ctx))
		if err != nil && w.quiet(ctx) {
			if stuckSince.IsZero() {
				stuckSince = time.Now()
			} else if time.Since(stuckSince) > stuckAfter {
				return fmt.Errorf("%w: version vectors equal for %v, records still differ: %w", federationtest.ErrNotConverged, stuckAfter, err)
			}
		} else {
			stuckSince = time.Time{}
		}
		pending := false
		for i := range w.n {
			cs, cerr := w.m.Node(i).Conflicts(ctx)
			if cerr != nil {
				return cerr
			}
			if len(cs) == 0 {
				continue
			}
			pending = true
			if err == nil || w.quiet(ctx) {
				for _, ci := range cs {
					win := ci.Ours
					if conflict.Compare(ci.Theirs, ci.Ours) > 0 {
						win = ci.Theirs
					}
					res := federation.Resolution{Value: win.Value, Deleted: win.Deleted}
					if rerr := w.m.Node(i).Resolve(ctx, ci.ID, res); rerr != nil && !errors.Is(rerr, federation.ErrNoConflict) {
						return fmt.Errorf("node %d: resolve: %w", i, rerr)
					}
					w.addAck(ack{node: i, coll: ci.Collection, key: ci.Key, value: win.Value, deleted: win.Deleted, resolving: true})
				}
				stuckSince = time.Time{}
				break // one device per round
			}
		}
		if err == nil && !pending {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("manual conflicts never settled")
			}
			return fmt.Errorf("%w: %w", federationtest.ErrNotConverged, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// quiet reports whether every node holds the same version vector: deltas
// are done, and what differs is left to the host (manual conflicts).
func (w *wideRun) quiet(ctx context.Context) bool {
	ref, err := w.m.Store(0).VersionVector(ctx)
	if err != nil {
		return false
	}
	for i := 1; i < w.n; i++ {
		vv, err := w.m.Store(i).VersionVector(ctx)
		if err != nil || vv.Compare(ref) != core.Equal {
			return false
		}
	}
	return true
}

// version is a committed local write, found in the recorders.
type version struct {
	core.Record
	node    int
	removal bool // a deletion written as an observed removal (see removal)
}

// removal reports whether r is a deletion of a log, union or embedding
// record written as a value with everything it held removed
// (conflict.Remover): a union with no element left, a log with every
// message deleted, a Removed embedding. The generator's
// other writes always add a live entry, so they are never taken for one.
func removal(k kind, r core.Record) bool {
	if r.Deleted {
		return false
	}
	switch k {
	case kUnion:
		evs, err := conflict.Events(r.Value)
		return err == nil && len(evs) == 0
	case kLog:
		l, err := crdt.DecodeLog(r.Value)
		if err != nil {
			return false
		}
		for _, m := range l.Messages() {
			if !m.Deleted {
				return false
			}
		}
		return true
	case kVector:
		e, err := conflict.DecodeEmbedding(r.Value)
		return err == nil && e.Removed
	}
	return false
}

// checkAccounted checks, on the converged state, that every acknowledged
// write is accounted for:
//
//   - each was committed (its version is in its node's recorder), and the
//     final causal context of its key covers it;
//   - last-writer-wins collections end with the greatest version written
//     (conflict.Compare: causally later writes carry later hybrid clocks);
//     manual ones with one of the values written or chosen by the host;
//   - profile fields end with the greatest (stamp, device) value set;
//   - log and union collections hold every entry written, unless a
//     deletion that causally follows its write exists, and nothing else;
//   - averages hold every contribution (total weight and mean);
//   - embeddings hold the content of one of the writes.
func (w *wideRun) checkAccounted(ctx context.Context) error {
	snap, err := w.m.Snapshot(ctx, 0)
	if err != nil {
		return err
	}
	// Every committed local version, by key.
	kinds := map[string]kind{}
	for _, c := range wideColls {
		kinds[c.name] = c.kind
	}
	byKey := map[string][]version{}
	for i := range w.n {
		for _, r := range w.m.Recorder(i).Local() {
			byKey[r.Collection+"\x00"+r.Key] = append(byKey[r.Collection+"\x00"+r.Key], version{r, i, removal(kinds[r.Collection], r)})
		}
	}
	// Match each acknowledged write to its version.
	acksByKey := map[string][]ack{}
	used := map[string]bool{}
	var cached []ack
	for _, a := range w.acks {
		if a.coll == federation.CollectionCache {
			cached = append(cached, a)
			continue
		}
		k := a.coll + "\x00" + a.key
		acksByKey[k] = append(acksByKey[k], a)
		if a.resolving {
			continue // Resolve writes one version per device it settles on
		}
		found := false
		for _, v := range byKey[k] {
			id := fmt.Sprintf("%s:%d", v.Origin, v.Seq)
			matches := v.Deleted == a.deleted && bytes.Equal(v.Value, a.value)
			switch {
			case a.deleted:
				matches = v.Deleted || v.removal
			case kinds[a.coll] == kVector && !v.Deleted:
				// The node completes an embedding's stamps (Prepare).
				e, err := conflict.DecodeEmbedding(v.Value)
				matches = err == nil && !e.Removed && e.ContentHash == a.content
			}
			if v.node == a.node && !used[id] && matches {
				used[id], found = true, true
				if fin, ok := snap.Records[k]; !ok || fin.Context[v.Origin] < v.Seq {
					return fmt.Errorf("%s/%s: the final version does not cover node %d's acknowledged write %s:%d", a.coll, a.key, a.node, v.Origin.Short(), v.Seq)
				}
				break
			}
		}
		if !found {
			return fmt.Errorf("%s/%s: node %d's acknowledged write (deleted=%v) was never committed", a.coll, a.key, a.node, a.deleted)
		}
	}
	if err := w.checkCache(ctx, cached); err != nil {
		return err
	}
	keys := make([]string, 0, len(acksByKey))
	for k := range acksByKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		coll, key, _ := strings.Cut(k, "\x00")
		fin, ok := snap.Records[k]
		if !ok {
			return fmt.Errorf("%s/%s: written and acknowledged, absent everywhere", coll, key)
		}
		if err := checkKey(kinds[coll], fin, acksByKey[k], byKey[k]); err != nil {
			return fmt.Errorf("%s/%s: %w (final %s)", coll, key, err, describeRec(fin))
		}
	}
	return nil
}

// checkCache checks the local-only collection: each device holds one of
// its own acknowledged writes of a key (a deletion included), never one
// made on another device, and nothing where it wrote nothing.
func (w *wideRun) checkCache(ctx context.Context, acks []ack) error {
	mine := map[string][]ack{} // by node and key
	keys := map[string]bool{}
	for _, a := range acks {
		mine[fmt.Sprint(a.node, "/", a.key)] = append(mine[fmt.Sprint(a.node, "/", a.key)], a)
		keys[a.key] = true
	}
	for i := range w.n {
		for k := range keys {
			r, err := w.m.Node(i).GetRecord(ctx, federation.CollectionCache, k)
			own := mine[fmt.Sprint(i, "/", k)]
			if errors.Is(err, federation.ErrNotFound) {
				if len(own) > 0 && !slices.ContainsFunc(own, func(a ack) bool { return a.deleted }) {
					return fmt.Errorf("cache/%s: node %d lost its own write", k, i)
				}
				continue
			}
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(own, func(a ack) bool { return a.deleted == r.Deleted && (r.Deleted || bytes.Equal(a.value, r.Value)) }) {
				return fmt.Errorf("cache/%s: node %d holds %s, not one of its own writes", k, i, describeRec(r))
			}
		}
	}
	return nil
}

func describeRec(r core.Record) string {
	v := r.Value
	if len(v) > 48 {
		v = v[:48]
	}
	return fmt.Sprintf("{%q deleted=%v ts=%v origin=%s seq=%d ctx=%v}", v, r.Deleted, r.Timestamp, r.Origin.Short(), r.Seq, r.Context)
}

func checkKey(k kind, fin core.Record, acks []ack, versions []version) error {
	switch k {
	case kOpaque:
		var best *core.Record
		for i := range versions {
			if best == nil || conflict.Compare(versions[i].Record, *best) > 0 {
				best = &versions[i].Record
			}
		}
		if best == nil {
			return errors.New("no version")
		}
		sameValue := bytes.Equal(fin.Value, best.Value)
		if fin.Stub {
			// Held without its value (selective sync): its digest and
			// size must be the written value's.
			sameValue = fin.Digest() == core.ValueDigest(best.Value) && fin.Size() == len(best.Value)
		}
		if fin.Timestamp != best.Timestamp || fin.Origin != best.Origin || fin.Seq != best.Seq || fin.Deleted != best.Deleted || !sameValue {
			return fmt.Errorf("last writer %s lost", describeRec(*best))
		}
	case kManual:
		for _, a := range acks {
			if a.deleted == fin.Deleted && (fin.Deleted || bytes.Equal(a.value, fin.Value)) {
				return nil
			}
		}
		return errors.New("the final value was never written")
	case kProfile:
		if fin.Deleted {
			return errors.New("a profile was never deleted")
		}
		got, err := conflict.ProfileFields(fin.Value)
		if err != nil {
			return err
		}
		best := map[string]ack{}
		for _, a := range acks {
			b, ok := best[a.field]
			if !ok || a.fieldTS > b.fieldTS || (a.fieldTS == b.fieldTS && a.fieldDev.Compare(b.fieldDev) > 0) {
				best[a.field] = a
			}
		}
		for f, a := range best {
			if string(got[f]) != fmt.Sprintf("%q", a.fieldVal) {
				return fmt.Errorf("field %s is %s, want the last write %q", f, got[f], a.fieldVal)
			}
		}
		if len(got) != len(best) {
			return fmt.Errorf("%d fields, %d written", len(got), len(best))
		}
	case kLog, kUnion:
		have := map[string]bool{}
		if !fin.Deleted {
			if k == kLog {
				l, err := crdt.DecodeLog(fin.Value)
				if err != nil {
					return err
				}
				for _, msg := range l.Messages() {
					have[msg.ID] = true
				}
			} else {
				evs, err := conflict.Events(fin.Value)
				if err != nil {
					return err
				}
				for _, e := range evs {
					have[string(e)] = true
				}
			}
		}
		written := map[string]bool{}
		for _, a := range acks {
			if a.elem == "" {
				continue
			}
			written[a.elem] = true
			if have[a.elem] {
				continue
			}
			if !deletedAfter(a, versions) && !removedBy(a.elem, versions) {
				return fmt.Errorf("entry %q lost: no deletion follows its write", a.elem)
			}
		}
		for e := range have {
			if !written[e] {
				return fmt.Errorf("entry %q was never written", e)
			}
		}
	case kAverage:
		if fin.Deleted {
			return errors.New("an average was never deleted")
		}
		avg, err := crdt.DecodeAverage(fin.Value)
		if err != nil {
			return err
		}
		mean, weight := avg.Value()
		var sum []float64
		for _, a := range acks {
			if sum == nil {
				sum = make([]float64, len(a.sample))
			}
			for d := range a.sample {
				sum[d] += a.sample[d]
			}
		}
		if int(weight) != len(acks) {
			return fmt.Errorf("total weight %v, %d contributions acknowledged", weight, len(acks))
		}
		for d := range sum {
			if math.Abs(mean[d]-sum[d]/float64(len(acks))) > 1e-9 {
				return fmt.Errorf("mean %v, want %v", mean, sum)
			}
		}
	case kVector:
		if removal(k, fin) {
			fin.Deleted = true // a deletion written as a Removed embedding
		}
		if fin.Deleted {
			for _, a := range acks {
				if a.deleted {
					return nil
				}
			}
			return errors.New("deleted, but no deletion was written")
		}
		e, err := conflict.DecodeEmbedding(fin.Value)
		if err != nil {
			return err
		}
		for _, a := range acks {
			if !a.deleted && a.content == e.ContentHash {
				return nil
			}
		}
		return errors.New("the final content was never written")
	}
	return nil
}

// removedBy reports whether a deletion written as an observed removal
// (see removal) removed the union entry elem: the deleting device held it.
// Its context may not cover the entry's write (a device can hold what it
// got through a repair before the change itself), so this is not
// deletedAfter's causal test.
func removedBy(elem string, versions []version) bool {
	for _, v := range versions {
		if !v.removal {
			continue
		}
		s, err := crdt.DecodeGSet(v.Value)
		if err != nil {
			continue
		}
		for _, r := range s.Removed() {
			if string(r) == elem {
				return true
			}
		}
	}
	return false
}

// deletedAfter reports whether a deletion of the key causally follows the
// acknowledged write a (its context covers a's version).
func deletedAfter(a ack, versions []version) bool {
	var mine *version
	for i := range versions {
		if versions[i].node == a.node && !versions[i].Deleted && bytes.Equal(versions[i].Value, a.value) {
			mine = &versions[i]
		}
	}
	if mine == nil {
		return false
	}
	return slices.ContainsFunc(versions, func(v version) bool {
		return (v.Deleted || v.removal) && v.Context[mine.Origin] >= mine.Seq
	})
}

// wideRegressions lists the seeds that failed when the widened generator
// was first run (before this wave's fixes were merged), with the cause
// found; TestWideRegressionSeeds replays every one of them on each run.
// Replay one by hand with FED_SEED=<seed> FED_SEEDS=1 (in-memory) or
// FED_SEED=<seed> FED_FILE_SEEDS=1 (libSQL+QUIC) and -run on the test
// named. Causes:
//
//   - join-delete: a join collection (union, chronological log) with a
//     deletion that covers one write but not a concurrent one: the
//     tombstone-as-bottom join of conflict.resolveJoin resurrects, on some
//     devices only, what the deletion covered; equal version vectors,
//     different records, forever (TestUnionDeleteRacingUpdateConverges is
//     the smallest case). A resolver design bug, in none of h1–h4. Fixed
//     on branch h10: such a deletion is written as an observed removal
//     (conflict.Remover); conflict.TestCausalConvergence reproduces it.
//   - vector: the same for embeddings, plus VectorMerge's sticky Stale
//     flag, which a superseded version can set on one device and not on
//     another (diverges without any deletion too, rarely). Not in h1–h4.
//     Fixed on branch h10 (Removed embeddings; Stale derived from the
//     Rival and Seen stamps a write carries).
//   - h2: libSQL keeps the incoming record's causal context instead of the
//     merged one (records equal but for the context; or Merkle roots
//     differ over equal records).
//
// (A 20,000-change transaction over libSQL+QUIC under -race took more than
// the 30 s the other seeds get to reach every device; the file variant now
// waits up to 90 s after one.)
var wideRegressions = []struct {
	test  string
	seed  uint64
	cause string
}{
	{"TestRandomizedConvergence", 6, "join-delete (custom-chrono)"},
	{"TestRandomizedConvergence", 16, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 25, "vector (custom-vector)"},
	{"TestRandomizedConvergence", 27, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 36, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 39, "join-delete (custom-chrono)"},
	{"TestRandomizedConvergence", 43, "vector (embeddings)"},
	{"TestRandomizedConvergence", 58, "join-delete (custom-chrono)"},
	{"TestRandomizedConvergence", 61, "join-delete (custom-union)"},
	{"TestRandomizedConvergence", 68, "join-delete (conversations)"},
	{"TestRandomizedConvergence", 72, "join-delete (conversations)"},
	{"TestRandomizedConvergence", 75, "join-delete (conversations)"},
	{"TestRandomizedConvergence", 81, "vector (embeddings)"},
	{"TestRandomizedConvergence", 87, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 91, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 98, "join-delete (custom-union)"},
	{"TestRandomizedConvergence", 116, "vector (custom-vector)"},
	{"TestRandomizedConvergence", 142, "vector (embeddings)"},
	{"TestRandomizedConvergence", 154, "join-delete (analytics)"},
	{"TestRandomizedConvergence", 158, "vector (custom-vector)"},
	{"TestRandomizedConvergence", 159, "vector (custom-vector)"},
	{"TestRandomizedConvergence", 172, "vector (custom-vector)"},
	{"TestRandomizedConvergence", 183, "join-delete (conversations)"},
	{"TestWidenedConvergenceLibSQLQUIC", 1, "h2 (embeddings: context only)"},
	{"TestWidenedConvergenceLibSQLQUIC", 2, "h2 (notes: context only)"},
	{"TestWidenedConvergenceLibSQLQUIC", 3, "h2 (conversations: context only)"},
	{"TestWidenedConvergenceLibSQLQUIC", 4, "join-delete (custom-chrono)"},
	{"TestWidenedConvergenceLibSQLQUIC", 5, "h2 (media: context only)"},
	{"TestWidenedConvergenceLibSQLQUIC", 6, "h2 (custom-chrono: context only)"},
}

// TestWidenedConvergenceLibSQLQUIC runs the widened generator on libSQL
// files over real QUIC on loopback: FED_FILE_SEEDS seeds (default 6) from
// FED_SEED.
func TestWidenedConvergenceLibSQLQUIC(t *testing.T) {
	runWide(t, wideVariant{libSQL: true, quic: true, bigEvery: 25}, envInt("FED_FILE_SEEDS", 6))
}

// TestWideRegressionSeeds replays every in-memory seed in wideRegressions:
// each must now converge with every acknowledged write accounted for. (The
// libSQL+QUIC entries are seeds 1 to 6, which TestWidenedConvergenceLibSQLQUIC
// runs by default.)
func TestWideRegressionSeeds(t *testing.T) {
	for _, r := range wideRegressions {
		if r.test != "TestRandomizedConvergence" {
			continue
		}
		v := wideVariant{bigEvery: 40}
		t.Run(fmt.Sprintf("%s/seed=%d", r.test, r.seed), func(t *testing.T) {
			if _, err := runWideSeed(t, r.seed, v); err != nil {
				t.Fatalf("seed %d (found failing: %s): %v", r.seed, r.cause, err)
			}
		})
	}
}

func runWide(t *testing.T, v wideVariant, count int) federationtest.FaultCounts {
	first := envInt("FED_SEED", 1)
	if testing.Short() {
		count = min(count, 20)
	}
	var total federationtest.FaultCounts
	failed := 0
	for seed := first; seed < first+count; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			f, err := runWideSeed(t, uint64(seed), v)
			total.Dropped += f.Dropped
			total.Duplicated += f.Duplicated
			total.Reordered += f.Reordered
			if err != nil {
				failed++
				t.Fatalf("seed %d: %v\nreplay: FED_SEED=%d FED_SEEDS=1 FED_FILE_SEEDS=1 go test ./federationtest -run '%s' -v", seed, err, seed, t.Name()[:strings.Index(t.Name(), "/")])
			}
		})
	}
	t.Logf("%d seeds from %d run, %d failed; faults injected: %+v", count, first, failed, total)
	return total
}
