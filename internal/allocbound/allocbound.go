// Package allocbound checks, in tests and fuzz tests, that a decoder
// allocates at most a constant times the bytes it was given: a hostile
// count or length must never buy more memory than the input that carries
// it.
package allocbound

import (
	"runtime"
	"testing"
)

// Slack is the fixed allowance on top of the per-byte bound: the handful
// of small allocations any decode makes (its result header, an error).
const Slack = 4 << 10

// Bytes returns the bytes allocated (runtime.MemStats.TotalAlloc) while
// decode runs.
func Bytes(decode func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	decode()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Check fails t when decode, given in, allocates more than
// perByte*len(in) + slack bytes (slack: usually Slack). A figure over the
// limit is measured twice more and the least kept, since another
// goroutine can only add to it.
func Check(t testing.TB, in []byte, perByte, slack int, decode func()) {
	t.Helper()
	limit := uint64(perByte)*uint64(len(in)) + uint64(slack)
	got := Bytes(decode)
	for i := 0; i < 2 && got > limit; i++ {
		got = min(got, Bytes(decode))
	}
	if got > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes (%.1f per input byte), limit %d (%d per byte + %d)",
			len(in), got, float64(got)/float64(max(len(in), 1)), limit, perByte, slack)
	}
}
