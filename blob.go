package federation

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/blob"
	"github.com/devicemesh/federation/internal/engine"
)

// Blob errors, testable with errors.Is.
var (
	// ErrNoBlobStore reports a blob call on a node without Config.Dir (the
	// blob store lives in Dir/blobs).
	ErrNoBlobStore = errors.New("no blob store: the node has no Dir")
	// ErrNotBlob reports a record that holds no blob reference.
	ErrNotBlob = engine.ErrNotBlob
	// ErrBlobIncomplete reports a blob whose original this device does
	// not hold whole (yet): FetchBlob brings it.
	ErrBlobIncomplete = blob.ErrIncomplete
	// ErrBlobCorrupt reports a stored chunk that failed verification
	// while read (core.ErrCorrupt): it was dropped, FetchBlob brings it.
	ErrBlobCorrupt = blob.ErrCorrupt
	// ErrNoBlobPeer reports a FetchBlob with no connected peer to ask.
	ErrNoBlobPeer = engine.ErrNoPeer
)

// MaxThumbnail bounds BlobOptions.Thumbnail: it travels inside the record.
const MaxThumbnail = 1 << 20

// BlobRef is what a record of a media collection holds for a blob: a
// reference to the original in the node's blob store (Blob, its id; Size;
// Digest, the SHA-256 of its content in hex), the host's ContentType and
// its Thumbnail. The record syncs like any other (under CollectionMedia's
// default policy, ModeThumbnail, at once), so every device sees the
// thumbnail; the original, often far larger, moves only when a device
// asks for it (FetchBlob). The record's value is BlobRef in JSON.
type BlobRef = engine.BlobRef

// BlobOptions describes a blob being put.
type BlobOptions struct {
	// ContentType is stored in the BlobRef ("": none).
	ContentType string
	// Thumbnail is a small preview stored in the record (at most
	// MaxThumbnail bytes; nil: none).
	Thumbnail []byte
}

// BlobTransfer is one fetch of an original in progress.
type BlobTransfer struct {
	Collection, Key string
	Blob            string   // the blob's id
	Peer            DeviceID // the device it is being fetched from
	Done, Total     int64    // bytes held and total (distinct chunks)
}

// BlobStats counts this node's blob traffic since it started.
type BlobStats struct {
	ChunksSent, ChunkBytesSent         int64 // served to peers
	ChunksReceived, ChunkBytesReceived int64 // received (verified or not)
	ChunksRejected                     int64 // received chunks that failed verification
	// WireSent and WireReceived count every byte of the blob streams'
	// frames, both directions, both roles (QUIC's own overhead aside).
	WireSent, WireReceived int64
}

// BlobGCStats says what CollectBlobs removed: Blobs still referenced,
// Dropped (referenced no more), ChunksDeleted and their BytesDeleted.
type BlobGCStats = engine.BlobGC

// nodeBlobs is the node's blob store (nil without Dir). gc is held
// shared by PutBlob and FetchBlob, exclusively by CollectBlobs, so that a
// blob being written is never collected before its record exists.
type nodeBlobs struct {
	b  *engine.Blobs
	gc sync.RWMutex
}

// openBlobs opens the blob store in dir under the node's at-rest key.
func (n *Node) openBlobs(dir string, key []byte) error {
	if dir == "" {
		engine.RefuseBlobs(n.c)
		return nil
	}
	b, err := engine.OpenBlobs(n.c, dir, key)
	if err != nil {
		return fmt.Errorf("open blob store: %w", err)
	}
	n.blobs.b = b
	return nil
}

func (n *Node) blobStore() (*engine.Blobs, error) {
	if err := n.alive(); err != nil {
		return nil, err
	}
	if n.blobs.b == nil {
		return nil, ErrNoBlobStore
	}
	return n.blobs.b, nil
}

// PutBlob stores the content of r (read to its end, one chunk in memory at
// a time) as a blob, and writes its BlobRef under (collection, key),
// replacing what was there. Chunks the store holds already are not stored
// again.
func (n *Node) PutBlob(ctx context.Context, collection, key string, r io.Reader, opts BlobOptions) (BlobRef, error) {
	b, err := n.blobStore()
	if err != nil {
		return BlobRef{}, err
	}
	if len(opts.Thumbnail) > MaxThumbnail {
		return BlobRef{}, fmt.Errorf("put blob: %w: thumbnail of %d bytes", ErrInvalidArgument, len(opts.Thumbnail))
	}
	n.blobs.gc.RLock()
	defer n.blobs.gc.RUnlock()
	if err := b.AddCollection(collection); err != nil {
		return BlobRef{}, err
	}
	m, err := b.Store.Put(ctx, r)
	if err != nil {
		return BlobRef{}, err
	}
	ref := BlobRef{
		Blob: m.ID().String(), Size: m.Size, Digest: hex.EncodeToString(m.Digest[:]),
		ContentType: opts.ContentType, Thumbnail: opts.Thumbnail,
	}
	v, err := json.Marshal(ref)
	if err != nil {
		return BlobRef{}, fmt.Errorf("put blob: %w", err)
	}
	if err := n.Put(ctx, collection, key, v); err != nil {
		return BlobRef{}, err
	}
	return ref, nil
}

// Blob returns the BlobRef under (collection, key): ErrNotFound when there
// is no record, ErrNotBlob when it holds something else.
func (n *Node) Blob(ctx context.Context, collection, key string) (BlobRef, error) {
	v, err := n.Get(ctx, collection, key)
	if err != nil {
		return BlobRef{}, err
	}
	ref, _, err := engine.DecodeBlobRef(v)
	return ref, err
}

// OpenBlob returns a reader of the original referenced under (collection,
// key), read one chunk at a time, every chunk and the whole content
// verified (a damaged chunk is an error wrapping ErrBlobCorrupt, and is
// dropped so that FetchBlob brings it again). It fails with
// ErrBlobIncomplete when this device does not hold the whole original:
// call FetchBlob first. Close the reader when done.
func (n *Node) OpenBlob(ctx context.Context, collection, key string) (io.ReadCloser, BlobRef, error) {
	b, err := n.blobStore()
	if err != nil {
		return nil, BlobRef{}, err
	}
	ref, err := n.Blob(ctx, collection, key)
	if err != nil {
		return nil, BlobRef{}, err
	}
	id, _ := blob.ParseID(ref.Blob)
	r, _, err := b.Store.Open(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		err = fmt.Errorf("%w: %w", ErrBlobIncomplete, err)
	}
	if err != nil {
		return nil, ref, fmt.Errorf("open blob %s/%q: %w", collection, key, err)
	}
	return r, ref, nil
}

// FetchBlob brings the original referenced under (collection, key) from
// the connected peers that hold it, and returns once this device holds it
// whole (at once if it does already). Only the chunks this device lacks
// move; each is verified on receipt, and one that fails is fetched again.
// A fetch cut off (ctx, a disconnect, Close) keeps what arrived: calling
// FetchBlob again, after a restart too, resumes from there. Progress shows
// in BlobTransfers while it runs.
func (n *Node) FetchBlob(ctx context.Context, collection, key string) error {
	b, err := n.blobStore()
	if err != nil {
		return err
	}
	ref, err := n.Blob(ctx, collection, key)
	if err != nil {
		return err
	}
	id, _ := blob.ParseID(ref.Blob)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close cuts the fetch off
		select {
		case <-n.c.Closed():
			cancel()
		case <-ctx.Done():
		}
	}()
	n.blobs.gc.RLock()
	defer n.blobs.gc.RUnlock()
	if err := b.Fetch(ctx, collection, key, id); err != nil {
		return fmt.Errorf("fetch blob %s/%q: %w", collection, key, err)
	}
	return nil
}

// BlobTransfers returns the fetches in progress, with their progress.
func (n *Node) BlobTransfers() []BlobTransfer {
	if n.blobs.b == nil {
		return nil
	}
	var out []BlobTransfer
	for _, tr := range n.blobs.b.Transfers() {
		t := BlobTransfer{Collection: tr.Collection, Key: tr.Key, Blob: tr.Blob.String(), Done: tr.Done.Load(), Total: tr.Total.Load()}
		if p, ok := tr.Peer.Load().(DeviceID); ok {
			t.Peer = p
		}
		out = append(out, t)
	}
	return out
}

// BlobStats returns the node's blob traffic counters.
func (n *Node) BlobStats() BlobStats {
	if n.blobs.b == nil {
		return BlobStats{}
	}
	s, f := &n.blobs.b.Served, &n.blobs.b.Fetched
	return BlobStats{
		ChunksSent: s.ChunksSent.Load(), ChunkBytesSent: s.ChunkBytesSent.Load(),
		ChunksReceived: f.ChunksRecv.Load(), ChunkBytesReceived: f.ChunkBytesRecv.Load(),
		ChunksRejected: f.Corrupt.Load(),
		WireSent:       s.WireSent.Load() + f.WireSent.Load(), WireReceived: s.WireRecv.Load() + f.WireRecv.Load(),
	}
}

// CollectBlobs drops the blobs that no live record references any more
// (a blob replaced by PutBlob, a record deleted) and deletes every chunk
// that no remaining blob lists. It waits for PutBlob and FetchBlob calls
// in progress, and holds new ones off while it runs.
func (n *Node) CollectBlobs(ctx context.Context) (BlobGCStats, error) {
	b, err := n.blobStore()
	if err != nil {
		return BlobGCStats{}, err
	}
	n.blobs.gc.Lock()
	defer n.blobs.gc.Unlock()
	return b.Collect(ctx, n.c)
}

// closeLast ends the subscriptions and closes the blob store: the last
// step of Close, once every session ended.
func (n *Node) closeLast() {
	n.events.Close()
	if n.blobs.b != nil {
		n.blobs.b.Store.Close()
	}
}
