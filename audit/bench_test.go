package audit

import (
	"context"
	"fmt"
	"testing"
)

func benchBackends(b *testing.B, fn func(b *testing.B, be Backend)) {
	b.Run("memory", func(b *testing.B) { fn(b, NewMemory()) })
	b.Run("libsql", func(b *testing.B) {
		fn(b, NewSQL(openLibSQL(b)))
	})
}

// BenchmarkAppend measures one Append (hash, insert; for libSQL an
// autocommit transaction on a file database).
func BenchmarkAppend(b *testing.B) {
	benchBackends(b, func(b *testing.B, be Backend) {
		l := New(be, Options{})
		e := BatchReceived(devA, "conversations", 1, 50, 4096)
		for b.Loop() {
			if _, err := l.Append(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerify measures verifying a log of 10,000 entries.
func BenchmarkVerify(b *testing.B) {
	benchBackends(b, func(b *testing.B, be Backend) {
		ctx := context.Background()
		var prev Hash
		for i := 1; i <= 10000; i++ {
			e, _ := normalize(BatchSent(devB, fmt.Sprint("c", i%7), 1, int64(i), 100))
			e.At, e.Seq, e.PrevHash = t0, uint64(i), prev
			e.Hash = e.ComputeHash()
			prev = e.Hash
			if err := be.Insert(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
		l := New(be, Options{})
		for b.Loop() {
			if err := l.Verify(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
