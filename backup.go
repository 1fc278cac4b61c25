package federation

import (
	"context"
	"errors"
	"fmt"
	"io"

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
	if n.c.Backup == nil {
		return fmt.Errorf("backup: store %T: %w", n.c.Store, errors.ErrUnsupported)
	}
	if err := n.c.Backup.Backup(ctx, w); err != nil {
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
func Restore(dir string, r io.Reader) error { return engine.Restore(dir, r) }

// RestoredFile is the file in Config.Dir by which Restore declares that
// the store was restored from a backup. The next New(dir) records the
// restore in the audit log, starts a new epoch of signed audit heads and
// removes the file (see the audit package doc, "Anchoring"). Whoever can
// write dir can create it: a declared restore is not hidden from the peers
// (they see the new epoch and audit it), it is only not reported as
// tampering.
const RestoredFile = DBFile + ".restored"
