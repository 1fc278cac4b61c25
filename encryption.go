package federation

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/devicemesh/federation/blob"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// RotateKey changes the key that encrypts the default store in dir
// (Config.Encryption): oldKey opens it today and newKey replaces it, each
// 32 bytes or nil (nil oldKey: the store is not encrypted yet, so
// RotateKey encrypts it; nil newKey: it decrypts it). The node using dir
// must be closed: RotateKey holds dir's lock while it works, so it fails
// with an error wrapping ErrLocked while a node (in any process) has dir
// open. A wrong oldKey fails with ErrWrongKey and changes nothing; a crash
// midway leaves the store under oldKey (see libsqlstore.Rekey). Start the
// next node with newKey. The blob store (media originals) is re-encrypted
// too: a copy under newKey is written beside it and takes its place once
// the store is under newKey (so it needs room for a second copy of it
// meanwhile); chunks no blob lists (a fetch never completed) are not
// carried over.
//
// Backups taken before the rotation stay under the key they were taken
// with, and the old key still opens them: rotate after a suspected leak,
// and re-take or delete older backups.
func RotateKey(ctx context.Context, dir string, oldKey, newKey []byte) error {
	if dir == "" {
		return fmt.Errorf("rotate key: %w: empty dir", ErrInvalidArgument)
	}
	g, err := engine.LockDir(dir)
	if err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	defer func() { _ = g.Release() }()
	// The blob store's copy under newKey is written first and swapped in
	// once the database is under newKey; a crash in between is finished
	// (or undone) by the next node's opening of the blob store, with
	// whichever key the database then opens with.
	var blobs *blob.Rekeying
	if _, err := os.Stat(filepath.Join(dir, engine.BlobDir)); err == nil {
		if blobs, err = blob.PrepareRekey(ctx, filepath.Join(dir, engine.BlobDir), oldKey, newKey); err != nil {
			return fmt.Errorf("rotate key: %w", err)
		}
	}
	if err := libsqlstore.Rekey(ctx, filepath.Join(dir, DBFile), oldKey, newKey); err != nil {
		if blobs != nil {
			blobs.Abort()
		}
		return fmt.Errorf("rotate key: %w", err)
	}
	if blobs != nil {
		if err := blobs.Commit(); err != nil {
			return fmt.Errorf("rotate key: the database is under the new key; the blob store's copy under it is put in place when the node next opens: %w", err)
		}
	}
	return nil
}
