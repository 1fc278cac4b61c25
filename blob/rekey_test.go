package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
)

// rekeyFixture fills a store in a fresh directory under key with two
// blobs and a meta file, and returns the directory, the blobs' ids and
// contents.
func rekeyFixture(t *testing.T, key []byte) (string, []ID, [][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "blobs")
	s, err := Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []ID
	var contents [][]byte
	for i, n := range []int64{3 << 20, 200 << 10} {
		b, err := io.ReadAll(randReader(uint64(i+1), n))
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.Put(context.Background(), bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		ids, contents = append(ids, m.ID()), append(contents, b)
	}
	if err := s.WriteMeta("collections", []byte("media\n")); err != nil {
		t.Fatal(err)
	}
	return dir, ids, contents
}

// requireUnder checks that the store in dir opens under key with every
// blob and the meta file whole.
func requireUnder(t *testing.T, dir string, key []byte, ids []ID, contents [][]byte) {
	t.Helper()
	s, err := Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, id := range ids {
		if !bytes.Equal(readAll(t, s, id), contents[i]) {
			t.Fatalf("blob %d differs after the rekey", i)
		}
	}
	if m, err := s.ReadMeta("collections"); err != nil || string(m) != "media\n" {
		t.Fatalf("meta file after the rekey: %q, %v", m, err)
	}
}

// requireNotUnder checks that key opens none of the blobs in dir.
func requireNotUnder(t *testing.T, dir string, key []byte, ids []ID) {
	t.Helper()
	s, err := Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range ids {
		if _, _, err := s.Open(context.Background(), id); err == nil {
			t.Fatalf("blob %s still opens with the old key", id)
		}
	}
}

// TestRekeyMovesEveryBlob: a committed rekey carries every blob and meta
// file over to the new key (and from none, and to none), after which the
// old key opens none; a wrong old key fails with ErrWrongKey and changes
// nothing.
func TestRekeyMovesEveryBlob(t *testing.T) {
	ctx := context.Background()
	a, b := testKey(), bytes.Repeat([]byte{9}, KeySize)
	for _, tc := range []struct {
		name     string
		old, new []byte
	}{{"key to key", a, b}, {"plain to key", nil, b}, {"key to plain", a, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, ids, contents := rekeyFixture(t, tc.old)
			r, err := PrepareRekey(ctx, dir, tc.old, tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(); err != nil {
				t.Fatal(err)
			}
			requireUnder(t, dir, tc.new, ids, contents)
			requireNotUnder(t, dir, tc.old, ids)
			for _, p := range []string{dir + rekeySuffix, dir + oldSuffix, filepath.Join(dir, rekeyDone)} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Fatalf("%s left behind: %v", p, err)
				}
			}
		})
	}
	t.Run("wrong old key", func(t *testing.T) {
		dir, ids, contents := rekeyFixture(t, a)
		for _, wrong := range [][]byte{b, nil} {
			if _, err := PrepareRekey(ctx, dir, wrong, b); !errors.Is(err, core.ErrWrongKey) {
				t.Fatalf("rekey with a wrong old key: %v, want ErrWrongKey", err)
			}
		}
		if _, err := os.Stat(dir + rekeySuffix); !os.IsNotExist(err) {
			t.Fatalf("a copy was left behind: %v", err)
		}
		requireUnder(t, dir, a, ids, contents)
	})
}

// TestRekeyCrashRecovery: a rekey cut off after its copy is complete is
// finished by the next Open with the new key (its owner switched keys) and
// undone by an Open with the old key (its owner did not); one cut off
// between the two renames of the swap is finished too.
func TestRekeyCrashRecovery(t *testing.T) {
	ctx := context.Background()
	a, b := testKey(), bytes.Repeat([]byte{9}, KeySize)
	t.Run("opened with the new key", func(t *testing.T) {
		dir, ids, contents := rekeyFixture(t, a)
		if _, err := PrepareRekey(ctx, dir, a, b); err != nil {
			t.Fatal(err)
		} // no Commit: the crash
		requireUnder(t, dir, b, ids, contents)
		requireNotUnder(t, dir, a, ids)
	})
	t.Run("opened with the old key", func(t *testing.T) {
		dir, ids, contents := rekeyFixture(t, a)
		if _, err := PrepareRekey(ctx, dir, a, b); err != nil {
			t.Fatal(err)
		}
		requireUnder(t, dir, a, ids, contents)
		if _, err := os.Stat(dir + rekeySuffix); !os.IsNotExist(err) {
			t.Fatalf("the copy under the key not used was kept: %v", err)
		}
	})
	t.Run("incomplete copy", func(t *testing.T) {
		dir, ids, contents := rekeyFixture(t, a)
		if _, err := PrepareRekey(ctx, dir, a, b); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir+rekeySuffix, rekeyDone)); err != nil {
			t.Fatal(err)
		}
		requireUnder(t, dir, a, ids, contents)
	})
	t.Run("between the renames", func(t *testing.T) {
		dir, ids, contents := rekeyFixture(t, a)
		if _, err := PrepareRekey(ctx, dir, a, b); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, dir+oldSuffix); err != nil {
			t.Fatal(err)
		}
		requireUnder(t, dir, b, ids, contents)
		if _, err := os.Stat(dir + oldSuffix); !os.IsNotExist(err) {
			t.Fatalf("the old store was kept: %v", err)
		}
	})
}
