package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/devicemesh/federation/core"
)

// DBFile is the name of the default store's file inside a node's directory
// (federation.DBFile).
const DBFile = "federation.db"

// Restore replaces the default store in dir with a copy written by a
// backup (federation.Restore documents the steps and guarantees).
func Restore(dir string, r io.Reader) error {
	if dir == "" {
		return fmt.Errorf("restore: %w: empty dir", core.ErrInvalidArgument)
	}
	g, err := LockDir(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() { _ = g.Release() }()
	tmp, err := os.CreateTemp(dir, "."+DBFile+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name) // a no-op once renamed
	if _, err := io.Copy(tmp, r); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("restore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("restore: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	renamed := false
	marker := filepath.Join(dir, RestoredFile)
	if _, err := os.Stat(marker); errors.Is(err, os.ErrNotExist) {
		// A failed restore leaves no declaration behind (a pending one, of
		// an earlier restore not yet opened, stays).
		defer func() {
			if !renamed {
				_ = os.Remove(marker)
			}
		}()
	}
	if err := WriteRestoreMarker(marker); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	SyncDir(dir)
	db := filepath.Join(dir, DBFile)
	for _, f := range []string{db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Rename(name, db); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	renamed = true
	SyncDir(dir) // make the rename durable where the platform allows
	return nil
}

// RestoredFile is the file in a node's directory by which Restore declares
// that the store was restored from a backup (federation.RestoredFile).
const RestoredFile = DBFile + ".restored"

// WriteRestoreMarker writes and syncs the restore declaration.
func WriteRestoreMarker(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("restored from a backup; removed by the next open once recorded\n"); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// SyncDir makes dir's entries durable where the platform allows.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
