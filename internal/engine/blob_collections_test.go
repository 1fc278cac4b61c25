package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/devicemesh/federation/blob"
)

// TestBlobCollectionsSealedAndMigrated: a plain collections list left by
// an earlier version is read, sealed into the store's meta file and
// removed; the list survives a reopen, grows with AddCollection, and no
// file under the store holds a collection's name in plain.
func TestBlobCollectionsSealedAndMigrated(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{3}, blob.KeySize)
	legacy := filepath.Join(dir, legacyCollectionsFile)
	if err := os.WriteFile(legacy, []byte("MARKER-coll-media\nMARKER-coll-photos\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *Blobs {
		t.Helper()
		st, err := blob.Open(dir, blob.Options{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		b := &Blobs{Store: st}
		if err := b.loadCollections(); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := open()
	want := []string{"MARKER-coll-media", "MARKER-coll-photos"}
	if got := b.Collections(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after migration: %q, want %q", got, want)
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("the plain list is still there: %v", err)
	}
	if err := b.AddCollection("MARKER-coll-voice"); err != nil {
		t.Fatal(err)
	}
	b.Store.Close()
	b = open()
	want = append(want, "MARKER-coll-voice")
	if got := b.Collections(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: %q, want %q", got, want)
	}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if bytes.Contains(data, []byte("MARKER-coll")) {
			t.Errorf("%s holds a collection name in plain", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
