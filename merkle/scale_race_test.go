//go:build race

package merkle

// scaleN: see scale_norace_test.go.
func scaleN(n int) int { return n / 10 }
