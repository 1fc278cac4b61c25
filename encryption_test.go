package federation_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// randHex returns n random bytes in hex.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// requireNotInDir fails if any byte sequence of secrets appears in any
// file under dir (the database, its WAL and shared memory, lock and guard
// files, temporary files), read raw.
func requireNotInDir(t *testing.T, dir, when string, secrets map[string][]byte) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) { // a temporary file removed meanwhile
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		require.NoError(t, err)
		files++
		for name, s := range secrets {
			if i := bytes.Index(b, s); i >= 0 {
				t.Errorf("%s: the %s is in plain text in %s at offset %d", when, name, filepath.Base(path), i)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotZero(t, files, "%s: no file under %s", when, dir)
	t.Logf("%s: %d files scanned", when, files)
}

// TestMarkerNeverOnDisk writes a unique marker through every kind of write
// (a Put, a transaction, a value that overflows its page, a blob) and checks that no
// byte of any file the node writes under Dir holds it, nor the key or the
// collection that carried it, nor the device's private key: while the node
// runs, after a checkpoint copied the WAL into the database file, in a
// backup, and after Close.
func TestMarkerNeverOnDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	cfg := federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: key}}

	marker := "MARKER" + randHex(t, 16)
	coll := "coll" + randHex(t, 6)
	recKey := "key" + randHex(t, 6)
	secrets := map[string][]byte{
		"marker":     []byte(marker),
		"record key": []byte(recKey),
		"collection": []byte(coll),
	}

	n, err := federation.New(cfg)
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, coll, recKey, []byte("a "+marker+" in a Put")))
	require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error {
		for i := range 3 {
			if err := tx.Put(coll, recKey+"-tx"+string(rune('a'+i)), []byte(marker+" in a transaction")); err != nil {
				return err
			}
		}
		return nil
	}))
	// A value of several pages (16 KiB each), the marker at page
	// boundaries and in between.
	big := bytes.Repeat([]byte{'.'}, 100<<10)
	for off := 0; off+len(marker) < len(big); off += 8<<10 - 7 {
		copy(big[off:], marker)
	}
	require.NoError(t, n.Put(ctx, coll, recKey+"-big", big))
	// A blob in the same collection: its chunks, its manifest and the
	// store's list of collections holding blob references.
	_, err = n.PutBlob(ctx, coll, recKey+"-blob", bytes.NewReader(big), federation.BlobOptions{Thumbnail: []byte(marker)})
	require.NoError(t, err)
	requireNotInDir(t, dir, "running", secrets)

	// More than the store's checkpoint threshold (4 MiB) of large values
	// makes the background checkpointer copy the WAL into the database
	// file.
	for i := range 60 {
		require.NoError(t, n.Put(ctx, coll, recKey+"-fill"+string(rune('A'+i)), big))
	}
	requireNotInDir(t, dir, "running, after checkpoints", secrets)

	// The backup's temporary copy is in Dir while it is streamed out.
	var backup bytes.Buffer
	w := &scanOnWrite{w: &backup, scan: func() {
		tmp, err := filepath.Glob(filepath.Join(dir, "."+federation.DBFile+".backup-*"))
		require.NoError(t, err)
		require.NotEmpty(t, tmp, "no temporary copy in Dir during the backup")
		requireNotInDir(t, dir, "during a backup", secrets)
	}}
	require.NoError(t, n.Backup(ctx, w))
	require.True(t, w.scanned)
	for name, s := range secrets {
		require.False(t, bytes.Contains(backup.Bytes(), s), "the %s is in plain text in a backup", name)
	}
	requireNotInDir(t, dir, "running, after a backup", secrets)
	require.NoError(t, n.Close())
	requireNotInDir(t, dir, "after Close", secrets)

	// The device's private key (its Ed25519 seed) is in the store, which
	// only the key opens.
	st, err := libsqlstore.Open(ctx, filepath.Join(dir, federation.DBFile), libsqlstore.Options{Key: key})
	require.NoError(t, err)
	seed, err := st.Meta(ctx, identity.MetaKey)
	require.NoError(t, err)
	rec, err := st.Get(ctx, coll, recKey)
	require.NoError(t, err)
	require.True(t, strings.Contains(string(rec.Value), marker), "the store reads back what was written")
	require.NoError(t, st.Close())
	secrets["device private key"] = seed
	requireNotInDir(t, dir, "after Close, private key", secrets)

	// The data is all there with the key.
	n, err = federation.New(cfg)
	require.NoError(t, err)
	got, err := n.Get(ctx, coll, recKey+"-big")
	require.NoError(t, err)
	require.Equal(t, big, got)
	require.NoError(t, n.Close())
}

// scanOnWrite calls scan before the first Write to w.
type scanOnWrite struct {
	w       io.Writer
	scan    func()
	scanned bool
}

func (s *scanOnWrite) Write(p []byte) (int, error) {
	if !s.scanned {
		s.scanned = true
		s.scan()
	}
	return s.w.Write(p)
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// TestWrongKeyRefused: a store opens only with its own key, and every
// mismatch is ErrWrongKey (never ErrDamaged, never a store that opens):
// another key, no key for an encrypted store, a key for a plain one.
func TestWrongKeyRefused(t *testing.T) {
	ctx := context.Background()
	make1 := func(t *testing.T, key []byte) (string, federation.DeviceID) {
		dir := t.TempDir()
		n, err := federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: key}})
		require.NoError(t, err)
		require.NoError(t, n.Put(ctx, "notes", "a", []byte("hello")))
		id := n.DeviceID()
		require.NoError(t, n.Close())
		return dir, id
	}
	refused := func(t *testing.T, dir string, enc federation.EncryptionConfig) {
		t.Helper()
		for range 2 { // a refusal leaves the store as it was
			n, err := federation.New(federation.Config{Dir: dir, Encryption: enc})
			if err == nil {
				_ = n.Close()
				t.Fatal("the store opened")
			}
			require.ErrorIs(t, err, federation.ErrWrongKey)
			require.NotErrorIs(t, err, federation.ErrDamaged)
			for _, k := range [][]byte{enc.Key} {
				if k != nil {
					require.NotContains(t, err.Error(), hex.EncodeToString(k), "the error shows the key")
				}
			}
			t.Logf("refused: %v", err)
		}
	}
	key := newKey(t)
	t.Run("another key", func(t *testing.T) {
		dir, _ := make1(t, key)
		refused(t, dir, federation.EncryptionConfig{Key: newKey(t)})
	})
	t.Run("no key for an encrypted store", func(t *testing.T) {
		dir, _ := make1(t, key)
		refused(t, dir, federation.EncryptionConfig{})
	})
	t.Run("a key for a plain store", func(t *testing.T) {
		dir, _ := make1(t, nil)
		refused(t, dir, federation.EncryptionConfig{Key: key})
	})
	t.Run("a damaged page of an encrypted store is damage", func(t *testing.T) {
		dir := t.TempDir()
		n, err := federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: key}})
		require.NoError(t, err)
		for i := range 200 {
			require.NoError(t, n.Put(ctx, "notes", fmt.Sprint(i), bytes.Repeat([]byte{'x'}, 1024)))
		}
		require.NoError(t, n.Close())
		path := filepath.Join(dir, federation.DBFile)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Greater(t, fi.Size(), int64(8*16<<10))
		overwrite(t, path, 5*16<<10, 4096)
		_, err = federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: key}})
		require.ErrorIs(t, err, federation.ErrDamaged)
		require.NotErrorIs(t, err, federation.ErrWrongKey)
	})
	t.Run("the right key, from a provider", func(t *testing.T) {
		dir, id := make1(t, key)
		n, err := federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{
			KeyProvider: func(context.Context) ([]byte, error) { return key, nil },
		}})
		require.NoError(t, err)
		defer n.Close()
		require.Equal(t, id, n.DeviceID())
		v, err := n.Get(ctx, "notes", "a")
		require.NoError(t, err)
		require.Equal(t, "hello", string(v))
	})
	t.Run("a failing provider", func(t *testing.T) {
		dir, _ := make1(t, key)
		boom := errors.New("keychain locked")
		_, err := federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{
			KeyProvider: func(context.Context) ([]byte, error) { return nil, boom },
		}})
		require.ErrorIs(t, err, boom)
	})
	t.Run("invalid config", func(t *testing.T) {
		for _, enc := range []federation.EncryptionConfig{
			{Key: key[:16]},
			{Key: key, KeyProvider: func(context.Context) ([]byte, error) { return key, nil }},
		} {
			_, err := federation.New(federation.Config{Dir: t.TempDir(), Encryption: enc})
			require.ErrorIs(t, err, federation.ErrInvalidConfig)
		}
	})
}

// TestRotateKey: after RotateKey the data, media blobs included, opens
// with the new key only, and a plain store can be encrypted the same way.
func TestRotateKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldKey, key := newKey(t), newKey(t)
	open := func(k []byte) (*federation.Node, error) {
		return federation.New(federation.Config{Dir: dir, Encryption: federation.EncryptionConfig{Key: k}})
	}
	n, err := open(nil)
	require.NoError(t, err)
	id := n.DeviceID()
	marker := "MARKER" + randHex(t, 16)
	for i := range 200 {
		require.NoError(t, n.Put(ctx, "notes", fmt.Sprint(i), []byte(marker)))
	}
	// A media original in the blob store, in plain until the rotation.
	clip := bytes.Repeat([]byte(marker+" in a blob "), (2<<20)/(len(marker)+11))
	_, err = n.PutBlob(ctx, federation.CollectionMedia, "clip", bytes.NewReader(clip), federation.BlobOptions{})
	require.NoError(t, err)
	require.ErrorIs(t, federation.RotateKey(ctx, dir, nil, oldKey), federation.ErrLocked, "the node is open")
	require.NoError(t, n.Close())

	// Encrypt the plain store, then rotate its key.
	require.NoError(t, federation.RotateKey(ctx, dir, nil, oldKey))
	requireNotInDir(t, dir, "encrypted", map[string][]byte{"marker": []byte(marker)})
	require.ErrorIs(t, federation.RotateKey(ctx, dir, key, key), federation.ErrWrongKey)
	require.NoError(t, federation.RotateKey(ctx, dir, oldKey, key))

	_, err = open(oldKey)
	require.ErrorIs(t, err, federation.ErrWrongKey, "the old key still opens the store")
	_, err = open(nil)
	require.ErrorIs(t, err, federation.ErrWrongKey)
	n, err = open(key)
	require.NoError(t, err)
	require.Equal(t, id, n.DeviceID())
	for i := range 200 {
		v, err := n.Get(ctx, "notes", fmt.Sprint(i))
		require.NoError(t, err)
		require.Equal(t, marker, string(v))
	}
	r, _, err := n.OpenBlob(ctx, federation.CollectionMedia, "clip")
	require.NoError(t, err, "the blob store follows the rotation")
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.True(t, bytes.Equal(clip, got), "the blob reads back whole under the new key")
	require.NoError(t, n.Put(ctx, "notes", "after", []byte(marker)))
	require.NoError(t, n.Close())
	requireNotInDir(t, dir, "after rotation", map[string][]byte{"marker": []byte(marker)})
}
