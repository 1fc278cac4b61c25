package libsqlstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/devicemesh/federation/core"
)

var _ core.BackupStore = (*Store)(nil)

// Backup implements core.BackupStore. It runs VACUUM INTO a temporary file
// next to the database (same file system and permissions as the store,
// mode 0600), on a reading connection: SQLite copies one read snapshot,
// so concurrent commits go on and are simply not in the copy. The result is
// a compact, self-contained database file with no WAL, which Open accepts
// as is; it is streamed to w and removed. While the copy runs its read
// snapshot keeps the WAL from restarting, so under heavy writes the WAL
// grows for the copy's duration (MaxWALBytes is exceeded, not enforced).
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	path, err := s.mainFile(ctx)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".backup-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	defer tmp.Close()
	// VACUUM INTO accepts an existing file only when it is empty, which it is.
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", name); err != nil {
		return s.wrapErr("backup", err)
	}
	if _, err := io.Copy(w, ctxReader{ctx, tmp}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// mainFile returns the path of the store's database file.
func (s *Store) mainFile(ctx context.Context) (string, error) {
	rows, err := s.db.QueryContext(ctx, "PRAGMA database_list")
	if err != nil {
		return "", s.wrapErr("database list", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var name, file string
		if err := rows.Scan(&seq, &name, &file); err != nil {
			return "", s.wrapErr("database list", err)
		}
		if name == "main" && file != "" {
			return file, nil
		}
	}
	if err := rows.Err(); err != nil {
		return "", s.wrapErr("database list", err)
	}
	return "", fmt.Errorf("database list: %w: no main file", core.ErrNotFound)
}

// ctxReader stops a copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
