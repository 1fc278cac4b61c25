package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/dirlock"
)

// LockFile is the name of the file a node locks in Config.Dir for as long
// as it runs (see Config.Dir). It also names the device the directory
// belongs to, once the device's identity exists.
const LockFile = "federation.lock"

// lockFileHeader starts the lock file's content; the device id follows in
// hex on the same line.
const lockFileHeader = "federation-dir v1 device "

// DirGuard is a node's hold on its directory: an exclusive lock, and the
// device the directory belongs to, so that a store that lost its identity
// (emptied, truncated, or replaced by another device's file) is refused
// rather than given a new one. A nil guard (no Dir) does nothing.
type DirGuard struct {
	dir    string
	lock   *dirlock.Lock
	device core.DeviceID // zero until an identity was recorded
}

// LockDir creates dir if needed (0700) and locks it: a second node on the
// same directory, in this process or another, gets ErrLocked. It returns
// nil for an empty dir.
func LockDir(dir string) (*DirGuard, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	l, err := dirlock.Acquire(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	g := &DirGuard{dir: dir, lock: l}
	if err := g.read(); err != nil {
		_ = l.Unlock()
		return nil, err
	}
	return g, nil
}

// read loads the device recorded in the lock file (none if it is empty).
func (g *DirGuard) read() error {
	f := g.lock.File()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<10))
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return nil
	}
	h, ok := strings.CutPrefix(text, lockFileHeader)
	raw, err := hex.DecodeString(h)
	if !ok || err != nil || len(raw) != len(g.device) {
		return fmt.Errorf("%w: %s is not a lock file of this SDK (remove it to open the store as it is)", core.ErrDamaged, f.Name())
	}
	copy(g.device[:], raw)
	return nil
}

// Check refuses a store whose identity is not the device the directory
// belongs to. Called before the node loads (or would create) an identity.
func (g *DirGuard) Check(ctx context.Context, st core.Store) error {
	if g == nil || g.device.IsZero() {
		return nil
	}
	lock := filepath.Join(g.dir, LockFile)
	seed, err := st.Meta(ctx, identity.MetaKey)
	switch {
	case errors.Is(err, core.ErrNotFound):
		return fmt.Errorf("%w: %s belongs to device %s but its store holds no identity (emptied, truncated or replaced); restore the store, or remove %s to start a new device there",
			core.ErrDamaged, g.dir, g.device.Short(), lock)
	case err != nil:
		return fmt.Errorf("check identity: %w", err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("%w: identity: %w", core.ErrDamaged, err)
	}
	if id.DeviceID() != g.device {
		return fmt.Errorf("%w: %s belongs to device %s but its store holds device %s; restore the store, or remove %s to use this one",
			core.ErrDamaged, g.dir, g.device.Short(), id.DeviceID().Short(), lock)
	}
	return nil
}

// Record notes in the lock file that the directory belongs to device.
func (g *DirGuard) Record(device core.DeviceID) error {
	if g == nil || g.device == device {
		return nil
	}
	f := g.lock.File()
	content := lockFileHeader + hex.EncodeToString(device[:]) + "\n"
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	g.device = device
	return nil
}

// Release unlocks the directory.
func (g *DirGuard) Release() error {
	if g == nil {
		return nil
	}
	if err := g.lock.Unlock(); err != nil {
		return fmt.Errorf("unlock %s: %w", g.dir, err)
	}
	return nil
}
