package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/devicemesh/federation/blob"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/peers"
)

// BlobTag tags a session's extra streams that carry media blobs
// (syncer.Session.OpenStream).
const BlobTag byte = 'B'

// BlobDir is the blob store's directory inside the node's Dir.
const BlobDir = "blobs"

// ErrNoPeer reports a fetch with no connected peer to fetch from.
var ErrNoPeer = errors.New("no connected peer")

// Blobs is the node's media blob store and its transfers: it serves the
// blob streams peers open (syncer.StreamHandler) and fetches blobs from
// connected peers.
type Blobs struct {
	Store *blob.Store
	peers *peers.Manager

	// Served counts what this node sent, Fetched what it received.
	Served, Fetched blob.Counters

	mu        sync.Mutex
	transfers map[*BlobTransfer]struct{}
	colls     map[string]bool // collections holding blob references (see Collections)
}

// BlobTransfer is one fetch in progress.
type BlobTransfer struct {
	Collection, Key string
	Blob            blob.ID
	Peer            atomic.Value // core.DeviceID being fetched from
	Done, Total     atomic.Int64 // bytes of distinct chunks held, and their total
}

// OpenBlobs opens the blob store in dir/BlobDir under key (the node's
// at-rest key; nil: plain) and installs it as the handler of the sessions'
// blob streams. Call it before Start.
func OpenBlobs(c *Core, dir string, key []byte) (*Blobs, error) {
	st, err := blob.Open(filepath.Join(dir, BlobDir), blob.Options{Key: key})
	if err != nil {
		return nil, err
	}
	b := &Blobs{Store: st, peers: c.Peers, transfers: map[*BlobTransfer]struct{}{}}
	if err := b.loadCollections(); err != nil {
		return nil, err
	}
	c.Sessions.Syncer.Streams = b
	return b, nil
}

// ServeStream serves a peer's blob stream (syncer.StreamHandler).
func (b *Blobs) ServeStream(ctx context.Context, peer core.DeviceID, tag byte, st core.Stream) {
	if tag != BlobTag {
		return
	}
	_ = blob.Serve(ctx, b.Store, st, &b.Served)
}

// Fetch brings blob id (referenced by collection/key) into the store from
// the connected peers, one after the other, until the store holds it
// whole. A fetch cut off resumes from the chunks already stored.
func (b *Blobs) Fetch(ctx context.Context, collection, key string, id blob.ID) error {
	if err := b.AddCollection(collection); err != nil {
		return err
	}
	if ok, err := b.Store.Complete(id); err == nil && ok {
		return nil
	}
	tr := &BlobTransfer{Collection: collection, Key: key, Blob: id}
	b.mu.Lock()
	b.transfers[tr] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.transfers, tr)
		b.mu.Unlock()
	}()
	var errs []error
	for _, mb := range b.peers.Members() {
		ps, ok := mb.(*PeerSession)
		if !ok {
			continue
		}
		tr.Peer.Store(ps.Peer())
		err := b.fetchFrom(ctx, ps, id, tr)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, fmt.Errorf("from %s: %w", ps.Peer().Short(), err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("fetch blob: %w", ErrNoPeer)
	}
	return fmt.Errorf("fetch blob: %w", errors.Join(errs...))
}

func (b *Blobs) fetchFrom(ctx context.Context, ps *PeerSession, id blob.ID, tr *BlobTransfer) error {
	st, err := ps.OpenStream(ctx, BlobTag)
	if err != nil {
		return err
	}
	defer st.Close()
	return blob.Fetch(ctx, b.Store, st, id, blob.FetchOptions{
		Counters: &b.Fetched,
		Progress: func(done, total int64) { tr.Done.Store(done); tr.Total.Store(total) },
	})
}

// Transfers returns the fetches in progress.
func (b *Blobs) Transfers() []*BlobTransfer {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*BlobTransfer, 0, len(b.transfers))
	for tr := range b.transfers {
		out = append(out, tr)
	}
	return out
}

// collectionsMeta is the blob store's meta file (blob.Store.WriteMeta,
// sealed with the at-rest key) listing, one per line, the collections
// whose records reference blobs in the store: GC scans them for the
// references to keep.
const collectionsMeta = "collections"

// legacyCollectionsFile is where earlier versions kept that list, in
// plain text; loadCollections moves it into the sealed meta file.
const legacyCollectionsFile = "collections"

func (b *Blobs) loadCollections() error {
	b.colls = map[string]bool{}
	data, err := b.Store.ReadMeta(collectionsMeta)
	legacy := filepath.Join(b.Store.Dir(), legacyCollectionsFile)
	migrate := errors.Is(err, blob.ErrNotFound)
	if migrate {
		data, err = os.ReadFile(legacy)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("blob collections: %w", err)
	}
	for _, c := range strings.Split(string(data), "\n") {
		if c != "" {
			b.colls[c] = true
		}
	}
	if migrate { // seal the list before the plain file goes
		if err := b.saveCollections(); err != nil {
			return err
		}
		if err := os.Remove(legacy); err != nil {
			return fmt.Errorf("blob collections: %w", err)
		}
	}
	return nil
}

// AddCollection records that collection holds blob references, before a
// manifest for it is stored.
func (b *Blobs) AddCollection(collection string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.colls[collection] {
		return nil
	}
	b.colls[collection] = true
	if err := b.saveCollections(); err != nil {
		delete(b.colls, collection)
		return err
	}
	return nil
}

// saveCollections writes the list of collections (b.mu held, or before
// the store is shared).
func (b *Blobs) saveCollections() error {
	names := make([]string, 0, len(b.colls))
	for c := range b.colls {
		names = append(names, c)
	}
	sort.Strings(names)
	if err := b.Store.WriteMeta(collectionsMeta, []byte(strings.Join(names, "\n")+"\n")); err != nil {
		return fmt.Errorf("blob collections: %w", err)
	}
	return nil
}

// Collections returns the collections holding blob references.
func (b *Blobs) Collections() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.colls))
	for c := range b.colls {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// RefuseBlobs makes the sessions of a node without a blob store close the
// blob streams peers open, so that their fetches fail at once and try
// another peer.
func RefuseBlobs(c *Core) { c.Sessions.Syncer.Streams = refuseStreams{} }

type refuseStreams struct{}

func (refuseStreams) ServeStream(context.Context, core.DeviceID, byte, core.Stream) {}

// ErrNotBlob reports a record that holds no blob reference.
var ErrNotBlob = errors.New("record is not a blob reference")

// BlobRef is what a record of a media collection holds for a blob (see
// federation.BlobRef): its value, in JSON.
type BlobRef struct {
	// Blob is the blob's id in hex: the SHA-256 of its manifest's top,
	// which lists its chunks (package blob).
	Blob string `json:"blob"`
	// Size is the original's size in bytes.
	Size int64 `json:"size"`
	// Digest is the SHA-256 of the original's content, in hex.
	Digest string `json:"digest"`
	// ContentType is the host's media type ("image/jpeg"), if any.
	ContentType string `json:"type,omitempty"`
	// Thumbnail is the host's small preview, if any.
	Thumbnail []byte `json:"thumb,omitempty"`
}

// DecodeBlobRef parses a record's value as a BlobRef (ErrNotBlob when it
// is none) and returns it with the blob's id.
func DecodeBlobRef(v []byte) (BlobRef, blob.ID, error) {
	var ref BlobRef
	if err := json.Unmarshal(v, &ref); err != nil || ref.Blob == "" {
		return BlobRef{}, blob.ID{}, ErrNotBlob
	}
	id, err := blob.ParseID(ref.Blob)
	if err != nil {
		return BlobRef{}, blob.ID{}, ErrNotBlob
	}
	return ref, id, nil
}

// BlobGC says what Collect removed.
type BlobGC struct {
	Blobs         int   // blobs still referenced
	Dropped       int   // blobs no record references any more
	ChunksDeleted int   // chunks no remaining blob lists
	BytesDeleted  int64 // their size on disk
}

// Collect drops the blobs that no live record of the blob collections
// references and then the chunks no remaining blob lists. The caller keeps
// blob writes and fetches off meanwhile.
func (b *Blobs) Collect(ctx context.Context, c *Core) (BlobGC, error) {
	live := map[blob.ID]bool{}
	for _, coll := range b.Collections() {
		err := c.Scan(ctx, coll, core.KeyRange{}, func(r core.Record) error {
			if _, id, err := DecodeBlobRef(r.Value); err == nil {
				live[id] = true
			}
			return nil
		})
		if err != nil {
			return BlobGC{}, fmt.Errorf("collect blobs: %w", err)
		}
	}
	ids, err := b.Store.Manifests()
	if err != nil {
		return BlobGC{}, fmt.Errorf("collect blobs: %w", err)
	}
	var st BlobGC
	for _, id := range ids {
		if live[id] {
			st.Blobs++
			continue
		}
		if err := b.Store.DeleteManifest(id); err != nil {
			return st, fmt.Errorf("collect blobs: %w", err)
		}
		st.Dropped++
	}
	gs, err := b.Store.GC(ctx)
	st.ChunksDeleted, st.BytesDeleted = gs.ChunksDeleted, gs.BytesDeleted
	if err != nil {
		return st, fmt.Errorf("collect blobs: %w", err)
	}
	return st, nil
}
