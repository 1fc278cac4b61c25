package federation

import (
	"context"
	"fmt"
	"path/filepath"

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
// next node with newKey.
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
	if err := libsqlstore.Rekey(ctx, filepath.Join(dir, DBFile), oldKey, newKey); err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	return nil
}
