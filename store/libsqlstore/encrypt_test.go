package libsqlstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, libsqlstore.KeySize)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// TestEncryptedBackup: the backup of an encrypted store is encrypted with
// the same key: it holds no plain data, opens with the key and with no
// other.
func TestEncryptedBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := randomKey(t)
	st, err := libsqlstore.Open(ctx, filepath.Join(dir, "store.db"), libsqlstore.Options{Key: key})
	require.NoError(t, err)
	marker := []byte("MARKER-" + hex.EncodeToString(randomKey(t)))
	require.NoError(t, st.SetMeta(ctx, "m", marker))
	var b bytes.Buffer
	require.NoError(t, st.Backup(ctx, &b))
	require.NoError(t, st.Close())
	require.False(t, bytes.Contains(b.Bytes(), marker), "the backup holds the marker in plain text")

	path := filepath.Join(t.TempDir(), "restored.db")
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
	for _, k := range [][]byte{nil, randomKey(t)} {
		_, err := libsqlstore.Open(ctx, path, libsqlstore.Options{Key: k})
		require.ErrorIs(t, err, core.ErrWrongKey)
	}
	st, err = libsqlstore.Open(ctx, path, libsqlstore.Options{Key: key})
	require.NoError(t, err)
	defer st.Close()
	got, err := st.Meta(ctx, "m")
	require.NoError(t, err)
	require.Equal(t, marker, got)
	require.NoError(t, st.IntegrityCheck(ctx))
}

// TestRekey: Rekey moves a store to a new key (the old one no longer opens
// it), refuses a wrong old key without touching the file, refuses an open
// store, and decrypts with a nil new key.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	k1, k2 := randomKey(t), randomKey(t)
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{Key: k1})
	require.NoError(t, err)
	require.NoError(t, st.SetMeta(ctx, "m", []byte("value")))
	require.ErrorIs(t, libsqlstore.Rekey(ctx, path, k1, k2), core.ErrLocked)
	require.NoError(t, st.Close())

	err = libsqlstore.Rekey(ctx, path, k2, k1)
	require.ErrorIs(t, err, core.ErrWrongKey)
	require.NotContains(t, err.Error(), hex.EncodeToString(k2))
	require.NotContains(t, err.Error(), hex.EncodeToString(k1))
	require.NoError(t, libsqlstore.Rekey(ctx, path, k1, k2))

	_, err = libsqlstore.Open(ctx, path, libsqlstore.Options{Key: k1})
	require.ErrorIs(t, err, core.ErrWrongKey)
	check := func(k []byte) {
		st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{Key: k})
		require.NoError(t, err)
		got, err := st.Meta(ctx, "m")
		require.NoError(t, err)
		require.Equal(t, "value", string(got))
		require.NoError(t, st.IntegrityCheck(ctx))
		require.NoError(t, st.Close())
	}
	check(k2)
	require.NoError(t, libsqlstore.Rekey(ctx, path, k2, nil))
	check(nil)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(b, []byte("SQLite format 3\x00")), "decrypted")
}

// TestKeySize: a key is 32 bytes.
func TestKeySize(t *testing.T) {
	_, err := libsqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), libsqlstore.Options{Key: []byte("short")})
	require.ErrorIs(t, err, core.ErrInvalidArgument)
}

// TestEncryptedPageSize: the key's statements run before page_size, and
// the check of the key before it does not fix the page size of a new
// file: an encrypted store gets the 16 KiB pages of a plain one.
func TestEncryptedPageSize(t *testing.T) {
	ctx := context.Background()
	st, err := libsqlstore.Open(ctx, filepath.Join(t.TempDir(), "s.db"), libsqlstore.Options{Key: randomKey(t)})
	require.NoError(t, err)
	defer st.Close()
	var size int
	require.NoError(t, st.DB().QueryRowContext(ctx, "PRAGMA page_size").Scan(&size))
	require.Equal(t, 16<<10, size)
}
