// Package dirlock holds exclusive advisory locks on files, so that one
// node at a time uses a directory or a store file.
//
// A lock is flock(2) on a lock file: exclusive between processes and
// between two opens in the same process (flock locks belong to the open
// file, not to the process), released by Unlock or when the process dies,
// however it dies. The lock file itself is left in place.
package dirlock

import (
	"errors"
	"fmt"
	"os"

	"github.com/devicemesh/federation/core"
)

// Lock is a held lock. Its methods are not safe for concurrent use.
type Lock struct {
	f *os.File
}

// Acquire creates path (mode 0600) if missing and locks it exclusively,
// without waiting: if another open holds it, it returns an error wrapping
// core.ErrLocked.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errBusy) {
			return nil, fmt.Errorf("lock %s: %w", path, core.ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// File returns the lock file, open for reading and writing, for a caller
// that keeps small state in it. Closing it releases the lock: use Unlock.
func (l *Lock) File() *os.File { return l.f }

// Unlock releases the lock and closes the file. It is idempotent.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
