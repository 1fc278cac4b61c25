package federation_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/blob"
)

// blobData returns n pseudo-random bytes from seed, generated as read.
func blobData(seed uint64, n int64) io.Reader {
	return io.LimitReader(&blobPRNG{r: mrand.New(mrand.NewPCG(seed, ^seed))}, n)
}

type blobPRNG struct{ r *mrand.Rand }

func (p *blobPRNG) Read(b []byte) (int, error) {
	for i := 0; i < len(b); i += 8 {
		v := p.r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return len(b), nil
}

// blobNode opens a node on dir with an encrypted store, on QUIC on
// loopback, started.
func blobNode(t *testing.T, dir string, key []byte) *federation.Node {
	t.Helper()
	n, err := federation.New(federation.Config{
		Dir:        dir,
		Encryption: federation.EncryptionConfig{Key: key},
		Network:    federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

func blobKey(t *testing.T) []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// linkBlobNodes makes a and b trust each other and connects b to a.
func linkBlobNodes(t *testing.T, a, b *federation.Node) {
	t.Helper()
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	if err := b.Connect(context.Background(), a.Addr(), a.DeviceID()); err != nil {
		t.Fatal(err)
	}
}

// waitBlobRef waits until n holds the BlobRef under (coll, key) naming id.
func waitBlobRef(t *testing.T, n *federation.Node, coll, key, id string) federation.BlobRef {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ref, err := n.Blob(context.Background(), coll, key)
		if err == nil && ref.Blob == id {
			return ref
		}
		if time.Now().After(deadline) {
			t.Fatalf("blob reference %s/%s did not sync: %v", coll, key, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readBlob(t *testing.T, n *federation.Node, coll, key string) []byte {
	t.Helper()
	r, _, err := n.OpenBlob(context.Background(), coll, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlobThumbnailSyncsOriginalOnDemand: the record with the thumbnail
// reaches the peer by the ordinary sync, the original does not move until
// the peer asks for it, then arrives whole over QUIC.
func TestBlobThumbnailSyncsOriginalOnDemand(t *testing.T) {
	ctx := context.Background()
	a, b := blobNode(t, t.TempDir(), blobKey(t)), blobNode(t, t.TempDir(), blobKey(t))
	linkBlobNodes(t, a, b)
	data, _ := io.ReadAll(blobData(1, 3<<20))
	thumb := []byte("a tiny preview")
	ref, err := a.PutBlob(ctx, federation.CollectionMedia, "photo-1", bytes.NewReader(data), federation.BlobOptions{ContentType: "image/jpeg", Thumbnail: thumb})
	if err != nil {
		t.Fatal(err)
	}
	got := waitBlobRef(t, b, federation.CollectionMedia, "photo-1", ref.Blob)
	if !bytes.Equal(got.Thumbnail, thumb) || got.Size != int64(len(data)) || got.ContentType != "image/jpeg" {
		t.Fatalf("synced reference: %+v", got)
	}
	time.Sleep(200 * time.Millisecond) // let anything that would move do so
	if _, _, err := b.OpenBlob(ctx, federation.CollectionMedia, "photo-1"); !errors.Is(err, federation.ErrBlobIncomplete) {
		t.Fatalf("original before a fetch: %v", err)
	}
	if s := a.BlobStats(); s.ChunksSent != 0 {
		t.Fatalf("%d chunks sent before any fetch", s.ChunksSent)
	}
	if err := b.FetchBlob(ctx, federation.CollectionMedia, "photo-1"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, b, federation.CollectionMedia, "photo-1"), data) {
		t.Fatal("fetched original differs")
	}
	if s := a.BlobStats(); s.ChunkBytesSent != int64(len(data)) {
		t.Fatalf("%d chunk bytes sent for a %d-byte original", s.ChunkBytesSent, len(data))
	}
	// A second fetch moves nothing.
	if err := b.FetchBlob(ctx, federation.CollectionMedia, "photo-1"); err != nil || a.BlobStats().ChunkBytesSent != int64(len(data)) {
		t.Fatalf("second fetch: %v, %d bytes sent", err, a.BlobStats().ChunkBytesSent)
	}
}

// TestBlobFetchResumesAfterRestart: a 64 MiB fetch over QUIC cut off
// halfway by closing the receiving node resumes, once it is restarted on
// the same Dir, from the chunks it stored: the sender sends at most one
// chunk group more than the blob.
func TestBlobFetchResumesAfterRestart(t *testing.T) {
	const size = 64 << 20
	ctx := context.Background()
	keyB, dirB := blobKey(t), t.TempDir()
	a, b := blobNode(t, t.TempDir(), blobKey(t)), blobNode(t, dirB, keyB)
	linkBlobNodes(t, a, b)
	ref, err := a.PutBlob(ctx, federation.CollectionMedia, "video", blobData(2, size), federation.BlobOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitBlobRef(t, b, federation.CollectionMedia, "video", ref.Blob)

	fetched := make(chan error, 1)
	go func() { fetched <- b.FetchBlob(ctx, federation.CollectionMedia, "video") }()
	var seen federation.BlobTransfer
	for deadline := time.Now().Add(60 * time.Second); seen.Done < size/2; time.Sleep(time.Millisecond) {
		if tr := b.BlobTransfers(); len(tr) == 1 {
			seen = tr[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("fetch stuck at %d bytes", seen.Done)
		}
	}
	if seen.Total != size || seen.Peer != a.DeviceID() {
		t.Fatalf("progress: %+v", seen)
	}
	if err := b.Close(); err != nil { // the receiving device stops mid-transfer
		t.Fatal(err)
	}
	if err := <-fetched; err == nil {
		t.Fatal("fetch cut off by Close succeeded")
	}
	sentBefore := a.BlobStats().ChunkBytesSent
	if sentBefore >= size {
		t.Fatalf("the whole blob moved before the cut (%d bytes)", sentBefore)
	}

	b = blobNode(t, dirB, keyB)
	if err := b.Connect(ctx, a.Addr(), a.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if err := b.FetchBlob(ctx, federation.CollectionMedia, "video"); err != nil {
		t.Fatal(err)
	}
	sent := a.BlobStats().ChunkBytesSent
	t.Logf("cut at %d bytes held, %d sent before the cut; %d sent in all for %d (%d again, group %d)",
		seen.Done, sentBefore, sent, size, sent-size, blob.GroupBytes)
	if sent-size > blob.GroupBytes || sent < size {
		t.Fatalf("sent %d chunk bytes for a %d-byte blob: %d again, want at most one group (%d)", sent, size, sent-size, blob.GroupBytes)
	}
	r, _, err := b.OpenBlob(ctx, federation.CollectionMedia, "video")
	if err != nil {
		t.Fatal(err)
	}
	want, got := blobData(2, size), r
	if !sameStream(t, want, got) {
		t.Fatal("resumed blob differs")
	}
	_ = r.Close()
}

// sameStream compares two readers piece by piece.
func sameStream(t *testing.T, a, b io.Reader) bool {
	t.Helper()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return true
			}
			t.Fatalf("read: %v / %v", ea, eb)
		}
	}
}

// TestCollectBlobsDropsReplacedOriginals: replacing a blob and collecting
// deletes the old original's own chunks and keeps the new one readable.
func TestCollectBlobsDropsReplacedOriginals(t *testing.T) {
	ctx := context.Background()
	n := blobNode(t, t.TempDir(), blobKey(t))
	if _, err := n.PutBlob(ctx, "photos", "p", blobData(3, 1<<20), federation.BlobOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := n.CollectBlobs(ctx)
	if err != nil || st.Dropped != 0 || st.ChunksDeleted != 0 || st.Blobs != 1 {
		t.Fatalf("collect with the blob referenced: %+v %v", st, err)
	}
	if _, err := n.PutBlob(ctx, "photos", "p", blobData(4, 1<<20), federation.BlobOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err = n.CollectBlobs(ctx)
	if err != nil || st.Dropped != 1 || st.ChunksDeleted < 8 || st.Blobs != 1 {
		t.Fatalf("collect after replacing: %+v %v", st, err)
	}
	if !sameStream(t, blobData(4, 1<<20), bytes.NewReader(readBlob(t, n, "photos", "p"))) {
		t.Fatal("current blob damaged")
	}
}

// TestBlobEncryptedAtRestInDir: with an encryption key, a blob and its
// thumbnail, both full of a unique marker, leave the marker in no file
// under the node's Dir (database, WAL, blob packs, manifests).
func TestBlobEncryptedAtRestInDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := blobNode(t, dir, blobKey(t))
	marker := []byte("MARKER-h26-3c1f0e-never-in-plain")
	content := bytes.Repeat(marker, (1<<20)/len(marker))
	if _, err := n.PutBlob(ctx, federation.CollectionMedia, "secret", bytes.NewReader(content), federation.BlobOptions{Thumbnail: marker}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, n, federation.CollectionMedia, "secret"), content) {
		t.Fatal("blob read back differs")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, marker[:16]) {
			t.Errorf("%s holds the marker", p)
		}
		return nil
	})
	if err != nil || files < 3 {
		t.Fatalf("walked %d files: %v", files, err)
	}
}

// TestFetchBlobWithoutPeer fails with ErrNoBlobPeer.
func TestFetchBlobWithoutPeer(t *testing.T) {
	ctx := context.Background()
	n := blobNode(t, t.TempDir(), nil)
	if _, err := n.PutBlob(ctx, "photos", "p", blobData(6, 100<<10), federation.BlobOptions{}); err != nil {
		t.Fatal(err)
	}
	// Held whole: nothing to fetch.
	if err := n.FetchBlob(ctx, "photos", "p"); err != nil {
		t.Fatal(err)
	}
	other := blobNode(t, t.TempDir(), nil)
	ref, _ := n.Blob(ctx, "photos", "p")
	v, _ := n.Get(ctx, "photos", "p")
	if err := other.Put(ctx, "photos", "p", v); err != nil {
		t.Fatal(err)
	}
	if err := other.FetchBlob(ctx, "photos", "p"); !errors.Is(err, federation.ErrNoBlobPeer) {
		t.Fatalf("fetch of %s with no peer: %v", ref.Blob, err)
	}
	if _, err := other.Blob(ctx, "photos", "missing"); !errors.Is(err, federation.ErrNotFound) {
		t.Fatalf("blob of a missing key: %v", err)
	}
	if err := other.Put(ctx, "photos", "plain", []byte("not a blob")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Blob(ctx, "photos", "plain"); !errors.Is(err, federation.ErrNotBlob) {
		t.Fatalf("blob of a plain record: %v", err)
	}
}
