package dirlock_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/dirlock"
)

func TestExclusiveWithinProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dirlock.Acquire(path); !errors.Is(err, core.ErrLocked) {
		t.Fatalf("second Acquire: %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	l2, err := dirlock.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Unlock: %v", err)
	}
	_ = l2.Unlock()
}
