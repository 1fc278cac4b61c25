package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of this node's store to w while the node
// runs: the state of one instant between two commits, as a crash at that
// instant would have left it. Writes go on meanwhile (they are not in the
// copy). With the default libSQL store the copy is a self-contained
// database file, ready to be put back with Restore; a Config.Store must
// implement core.BackupStore, or Backup returns an error wrapping
// errors.ErrUnsupported.
//
// The copy holds the device's private key and all its data, unencrypted
// unless the store encrypts its file: keep it as safe as the device.
//
// Restoring is safe however old the copy is: the restored node is a new
// replica incarnation of the same device (see Node.OriginDevice and the
// package documentation), so every write it makes after the restore is
// new to its peers, and it gets back from them everything written since
// the copy, its own former writes included.
func (n *Node) Backup(ctx context.Context, w io.Writer) error {
	if err := n.alive(); err != nil {
		return err
	}
	if n.backup == nil {
		return fmt.Errorf("backup: store %T: %w", n.store, errors.ErrUnsupported)
	}
	if err := n.backup.Backup(ctx, w); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Restore replaces the default store in dir with a copy written by Backup:
// it writes r to a temporary file in dir, syncs it, removes the store's WAL
// and shared-memory files and renames the copy to DBFile. The node using
// dir must be closed: Restore holds dir's lock while it works, so it fails
// with an error wrapping ErrLocked while a node (in any process) has dir
// open, and no node can open dir meanwhile. New(dir) then starts from the
// copy, and the node re-syncs with its peers. On error
// the store in dir is left as it was, unless the error comes from the final
// rename.
func Restore(dir string, r io.Reader) error {
	if dir == "" {
		return fmt.Errorf("restore: %w: empty dir", ErrInvalidArgument)
	}
	g, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() { _ = g.release() }()
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
	db := filepath.Join(dir, DBFile)
	for _, f := range []string{db + "-wal", db + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Rename(name, db); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the platform allows
		_ = d.Close()
	}
	return nil
}
