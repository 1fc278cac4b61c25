package blob

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestMetaSealedAtRest: a meta file reads back what was written, replaced
// whole; with a key neither its content nor its name is in any file of
// the store, and another key fails to open it (ErrCorrupt); without a key
// it reads back in plain.
func TestMetaSealedAtRest(t *testing.T) {
	name, secret := "collections", []byte("MARKER-meta-5d2e-notes\nMARKER-meta-5d2e-photos\n")
	dir := t.TempDir()
	s, err := Open(dir, Options{Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadMeta(name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read of an absent meta file: %v, want ErrNotFound", err)
	}
	if err := s.WriteMeta(name, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteMeta(name, secret); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadMeta(name)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read back %q, %v; want %q", got, err, secret)
	}
	if err := s.WriteMeta("", nil); err == nil {
		t.Fatal("a meta file without a name was written")
	}
	s.Close()

	files, metas := 0, 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		if filepath.Base(filepath.Dir(p)) == metaDir {
			metas++
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range [][]byte{[]byte("MARKER-meta"), []byte("old")} {
			if bytes.Contains(b, m) {
				t.Errorf("%s holds %q in plain", p, m)
			}
		}
		if bytes.Contains([]byte(p), []byte(name)) {
			t.Errorf("the file name %s shows the meta file's name", p)
		}
		return nil
	})
	if err != nil || metas != 1 {
		t.Fatalf("walked %d files, %d meta files (want one: the replaced content and its temporary file gone): %v", files, metas, err)
	}

	other, err := Open(dir, Options{Key: bytes.Repeat([]byte{8}, KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// Another key names the file differently; under the same name it
	// fails verification.
	path, opath := s.metaPath(name), other.metaPath(name)
	if err := os.Rename(path, opath); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ReadMeta(name); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read with another key: %v, want ErrCorrupt", err)
	}

	plain := openStore(t, nil)
	if err := plain.WriteMeta(name, secret); err != nil {
		t.Fatal(err)
	}
	if got, err := plain.ReadMeta(name); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("plain store read back %q, %v", got, err)
	}
}
