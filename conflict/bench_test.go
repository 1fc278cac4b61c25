package conflict

import (
	"fmt"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
)

// benchPairs is the number of distinct conflicts each benchmark iteration
// resolves.
const benchPairs = 100_000

// runPairs resolves every pair once per iteration and reports resolutions
// per second.
func runPairs(b *testing.B, r core.Resolver, pairs []core.Conflict) {
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range pairs {
			if _, err := r.Resolve(ctx, pairs[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(pairs))/b.Elapsed().Seconds(), "resolutions/s")
}

// BenchmarkResolveLWW resolves 100,000 conflicts of 64-byte values with
// random-looking stamps.
func BenchmarkResolveLWW(b *testing.B) {
	pairs := make([]core.Conflict, benchPairs)
	for i := range pairs {
		v := make([]byte, 64)
		v[0] = byte(i)
		ts := core.Timestamp(uint64(i) * 2654435761 % 1000)
		pairs[i] = core.Conflict{
			Collection: core.CollectionMedia, Key: fmt.Sprint(i),
			Local:  rec(v, ts, i%3),
			Remote: rec(v[:32], ts+core.Timestamp(i%3)-1, (i+1)%3),
		}
	}
	runPairs(b, LWW{}, pairs)
}

// BenchmarkResolveChronological resolves 100,000 conversation conflicts:
// a shared history of 20 messages, with 2 new messages on each side and one
// concurrent edit, each body 80 bytes.
func BenchmarkResolveChronological(b *testing.B) {
	body := make([]byte, 80)
	pairs := make([]core.Conflict, benchPairs)
	var base crdt.Log
	for m := 0; m < 20; m++ {
		if err := base.Append(crdt.Message{ID: fmt.Sprintf("msg-%02d", m), Time: core.Timestamp(m + 1), Device: dev(m % 2), Body: body}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range pairs {
		l, r := base.Clone(), base.Clone()
		for k := 0; k < 2; k++ {
			ts := core.Timestamp(100 + i + k)
			if err := l.Append(crdt.Message{ID: fmt.Sprintf("l-%d-%d", i, k), Time: ts, Device: dev(1), Body: body}); err != nil {
				b.Fatal(err)
			}
			if err := r.Append(crdt.Message{ID: fmt.Sprintf("r-%d-%d", i, k), Time: ts, Device: dev(2), Body: body}); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Edit("msg-03", []byte("edited"), core.Timestamp(200+i), dev(2)); err != nil {
			b.Fatal(err)
		}
		pairs[i] = core.Conflict{
			Collection: core.CollectionConversation, Key: fmt.Sprint(i),
			Local:  rec(l.Encode(), core.Timestamp(100+i), 1),
			Remote: rec(r.Encode(), core.Timestamp(200+i), 2),
		}
	}
	runPairs(b, Chronological{}, pairs)
	b.ReportMetric(float64(len(pairs[0].Local.Value)), "bytes/value")
}
