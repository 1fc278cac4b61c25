//go:build linux

package merkle

import (
	"runtime"
	"syscall"
	"time"
)

// threadCPU returns the CPU time of the calling OS thread (RUSAGE_THREAD).
// Benchmarks report it next to wall time because the build machine is
// shared: wall time there measures the neighbours as much as the code.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lockThread pins the goroutine so threadCPU measures it alone.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
