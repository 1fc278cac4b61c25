package federation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/devicemesh/federation/internal/engine"
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
// the copy, its own former writes included. Its audit log also lacks the
// entries written since the copy; Restore declares that, so that the
// restored device starts a new epoch of signed audit heads instead of
// being reported as tampered (see RestoredFile).
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
//
// Before replacing the store, Restore writes RestoredFile in dir and syncs
// it and dir, so that the restore is declared before it happens: the next
// open records an audit entry naming the backup's audit head, starts a new
// epoch of signed audit heads (peers then accept that the entries written
// since the backup are gone) and removes the file once the new epoch's
// head is durable. A crash before the rename leaves the file next to the
// old store, whose next open then declares a restore that changed
// nothing (one extra epoch, audited); no crash can leave a restored store
// without the file.
func Restore(dir string, r io.Reader) error {
	if dir == "" {
		return fmt.Errorf("restore: %w: empty dir", ErrInvalidArgument)
	}
	g, err := engine.LockDir(dir)
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
	if err := writeRestoreMarker(marker); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	syncDir(dir)
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
	syncDir(dir) // make the rename durable where the platform allows
	return nil
}

// RestoredFile is the file in Config.Dir by which Restore declares that
// the store was restored from a backup. The next New(dir) records the
// restore in the audit log, starts a new epoch of signed audit heads and
// removes the file (see the audit package doc, "Anchoring"). Whoever can
// write dir can create it: a declared restore is not hidden from the peers
// (they see the new epoch and audit it), it is only not reported as
// tampering.
const RestoredFile = DBFile + ".restored"

// writeRestoreMarker writes and syncs the restore declaration.
func writeRestoreMarker(path string) error {
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

// syncDir makes dir's entries durable where the platform allows.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
