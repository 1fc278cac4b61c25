package merkle

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// uuidKey is a realistic 36-byte key.
func uuidKey(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i*2654435761%(1<<32), i) }

// scalePair builds a local tree of n keys and a remote one that differs in
// d records (see diverge).
func scalePair(t tb, n, d int, key func(int) string) (local, remote *Tree, want Diff) {
	local = New()
	for i := 0; i < n; i++ {
		local.Set(key(i), digestOf(uint64(i)))
	}
	remote, want = diverge(t, local, d, key)
	return local, remote, want
}

// diverge returns a copy of local (made through a snapshot) that differs in
// d records: a third changed, a third only local, a third only remote.
func diverge(t tb, local *Tree, d int, key func(int) string) (remote *Tree, want Diff) {
	n := local.Len()
	remote, err := Restore(local.AppendSnapshot(nil))
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < d; j++ {
		i := j * (n / d)
		switch j % 3 {
		case 0:
			remote.Set(key(i), digestOf(uint64(i)+1))
			want.Changed = append(want.Changed, key(i))
		case 1:
			remote.Delete(key(i))
			want.LocalOnly = append(want.LocalOnly, key(i))
		case 2:
			remote.Set(key(n+i), digestOf(1))
			want.RemoteOnly = append(want.RemoteOnly, key(n+i))
		}
	}
	sortDiff(&want)
	return remote, want
}

// At a million keys with 100 differing records, reconciliation must find
// exactly those records for well under the 100 x 1 KiB x 2 bytes the sync
// target allows for metadata. Other configurations are logged to show the
// bytes-for-rounds trade.
func TestReconcileMillion(t *testing.T) {
	const n, d = 1_000_000, 100
	configs := []struct {
		name string
		cfg  Config
	}{
		{"default", Config{}},
		{"one level a round", Config{RoundBudget: -1}},
		{"64 KiB rounds", Config{RoundBudget: 64 << 10}},
		{"4-byte fingerprints", Config{FPLen: 4}},
	}
	for _, kc := range []struct {
		name string
		key  func(int) string
	}{{"12-byte keys", keyOf}, {"36-byte keys", uuidKey}} {
		t.Run(kc.name, func(t *testing.T) {
			local, remote, want := scalePair(t, scaleN(n), d, kc.key)
			for _, c := range configs {
				c.cfg.Salt = 7
				start := time.Now()
				got, s := exchange(t, local, remote, c.cfg)
				elapsed := time.Since(start)
				if !diffEqual(got, want) {
					t.Fatalf("%s: found %d/%d/%d differences, want %d/%d/%d", c.name, len(got.LocalOnly),
						len(got.RemoteOnly), len(got.Changed), len(want.LocalOnly), len(want.RemoteOnly), len(want.Changed))
				}
				total := s.RequestBytes + s.ResponseBytes
				t.Logf("%-20s n=%d d=%d: %d rounds, %d request + %d response = %d bytes (%.0f per difference), %d nodes, %d keys listed, %v",
					c.name, local.Len(), d, s.Rounds, s.RequestBytes, s.ResponseBytes, total, float64(total)/d,
					s.Nodes, s.Listed, elapsed)
				if c.name != "default" {
					continue
				}
				if limit := d * 1024 * 2 / 2; total > limit {
					t.Fatalf("%d bytes exchanged, want at most %d (half the 100 x 1 KiB x 2 budget)", total, limit)
				}
				if s.Rounds > 6 {
					t.Fatalf("%d rounds", s.Rounds)
				}
			}
			if kc.name == "36-byte keys" {
				byDifferences(t, local, kc.key)
			}
		})
	}
}

// byDifferences shows how the cost grows with the number of differences.
func byDifferences(t *testing.T, local *Tree, key func(int) string) {
	n := local.Len()
	for _, d := range []int{1, 10, 1000, 10000} {
		remote, want := diverge(t, local, d, key)
		got, s := exchange(t, local, remote, Config{Salt: 9})
		if !diffEqual(got, want) {
			t.Fatalf("d=%d: wrong diff", d)
		}
		total := s.RequestBytes + s.ResponseBytes
		t.Logf("n=%d d=%-5d: %d rounds, %d request + %d response = %d bytes (%.0f per difference)", n, d, s.Rounds,
			s.RequestBytes, s.ResponseBytes, total, float64(total)/float64(d))
		// Small differences may spend up to the round budget to save rounds.
		maxRounds := 6
		if d > 1000 {
			maxRounds = 10 // responses are bounded, so a large repair takes more of them
		}
		if total > 16<<10+d*1024 || s.Rounds > maxRounds {
			t.Fatalf("d=%d: %d bytes in %d rounds", d, total, s.Rounds)
		}
	}
}

func sortDiff(d *Diff) {
	for _, s := range [][]string{d.LocalOnly, d.RemoteOnly, d.Changed} {
		sortStrings(s)
	}
}

// TestMemoryPerKey measures the heap a million-key tree holds, key bytes
// included.
func TestMemoryPerKey(t *testing.T) {
	n := scaleN(1_000_000)
	keys := make([]string, n)
	keyBytes := 0
	for i := range keys {
		keys[i] = uuidKey(i)
		keyBytes += len(keys[i])
	}
	before := heapInUse()
	start := time.Now()
	tr := New()
	for i, k := range keys {
		tr.Set(k, digestOf(uint64(i)))
	}
	build := time.Since(start)
	after := heapInUse()
	per := float64(after-before) / float64(n)
	snap := tr.AppendSnapshot(nil)
	start = time.Now()
	back, err := Restore(snap)
	restore := time.Since(start)
	if err != nil || back.Root() != tr.Root() {
		t.Fatalf("restore: %v", err)
	}
	depth, leaves, inner := shape(&tr.root, 0)
	t.Logf("n=%d: %.1f heap bytes per key (%.1f without the %d-byte keys); Set-built in %v, snapshot %d bytes restored in %v; depth %d, %d leaves, %d inner nodes",
		n, per, per-float64(keyBytes)/float64(n), keyBytes/n, build, len(snap), restore, depth, leaves, inner)
	if per > 200 {
		t.Fatalf("%.0f bytes per key", per)
	}
	runtime.KeepAlive(tr)
	runtime.KeepAlive(keys)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func shape(n *node, d int) (depth, leaves, inner int) {
	if n.kids == nil {
		return d, 1, 0
	}
	inner = 1
	for i := range n.kids {
		kd, kl, ki := shape(&n.kids[i], d+1)
		depth, leaves, inner = max(depth, kd), leaves+kl, inner+ki
	}
	return depth, leaves, inner
}

func BenchmarkSet(b *testing.B) {
	const n = 1_000_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = uuidKey(i)
	}
	tr := New()
	for i, k := range keys {
		tr.Set(k, digestOf(uint64(i)))
	}
	b.Run("update", func(b *testing.B) {
		defer lockThread()()
		c0, i := threadCPU(), 0
		for b.Loop() {
			tr.Set(keys[i%n], digestOf(uint64(i)+7))
			i++
		}
		reportCPU(b, c0)
	})
	b.Run("insert", func(b *testing.B) {
		fresh := make([]string, b.N)
		for i := range fresh {
			fresh[i] = uuidKey(n + i)
		}
		defer lockThread()()
		b.ResetTimer()
		c0 := threadCPU()
		for i := 0; i < b.N; i++ {
			tr.Set(fresh[i], digestOf(1))
		}
		reportCPU(b, c0)
		b.StopTimer()
		for _, k := range fresh {
			tr.Delete(k)
		}
	})
	b.Run("delete+insert", func(b *testing.B) {
		defer lockThread()()
		c0, i := threadCPU(), 0
		for b.Loop() {
			k := keys[i%n]
			tr.Delete(k)
			tr.Set(k, digestOf(1))
			i++
		}
		reportCPU(b, c0)
	})
}

func BenchmarkReconcile1M(b *testing.B) {
	local, remote, _ := scalePair(b, 1_000_000, 100, uuidKey)
	var s Stats
	defer lockThread()()
	c0 := threadCPU()
	for b.Loop() {
		_, s = exchange(b, local, remote, Config{Salt: 7})
	}
	reportCPU(b, c0)
	b.ReportMetric(float64(s.RequestBytes+s.ResponseBytes), "wire-bytes")
	b.ReportMetric(float64(s.Rounds), "rounds")
}

func BenchmarkRecordDigest(b *testing.B) {
	r := baseRecord()
	r.Value = make([]byte, 1024)
	defer lockThread()()
	c0 := threadCPU()
	for b.Loop() {
		RecordDigest(r)
	}
	reportCPU(b, c0)
}

// reportCPU reports the thread's CPU time per operation since c0.
func reportCPU(b *testing.B, c0 time.Duration) {
	if c := threadCPU(); c > 0 {
		b.ReportMetric(float64(c-c0)/float64(b.N), "cpu-ns/op")
	}
}
