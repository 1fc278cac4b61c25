package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation"
)

// The blob scenarios (lane h26): media goodput between two nodes against
// raw quic-go moving the same bytes file to file, and the cost of bringing
// a peer up to date after an edit inside a large blob.

// blobColl is the collection the blob scenarios write.
const blobColl = federation.CollectionMedia

// blobPair is two started nodes on QUIC on loopback, each with its Dir
// (store and blob store encrypted), trusting each other, b connected to a.
type blobPair struct {
	a, b *federation.Node
	dirs [2]string
}

func openBlobNode(ctx context.Context, dir string) (*federation.Node, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	n, err := federation.New(federation.Config{
		Dir: dir, Encryption: federation.EncryptionConfig{Key: key},
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
	})
	if err != nil {
		return nil, err
	}
	if err := n.Start(ctx); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

func newBlobPair(ctx context.Context, root string) (*blobPair, error) {
	p := &blobPair{}
	for i := range p.dirs {
		p.dirs[i] = filepath.Join(root, fmt.Sprintf("node%d", i))
	}
	var err error
	if p.a, err = openBlobNode(ctx, p.dirs[0]); err != nil {
		return nil, err
	}
	if p.b, err = openBlobNode(ctx, p.dirs[1]); err != nil {
		_ = p.a.Close()
		return nil, err
	}
	p.a.TrustDevice(p.b.PublicKey())
	p.b.TrustDevice(p.a.PublicKey())
	if err := p.b.Connect(ctx, p.a.Addr(), p.a.DeviceID()); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *blobPair) close() {
	_ = p.b.Close()
	_ = p.a.Close()
}

// blobBytes returns n pseudo-random bytes from seed, generated as read,
// with [at, at+edit) drawn from another seed (edit 0: none).
func blobBytes(seed uint64, n, at, edit int64) io.Reader {
	return &blobPRNG{base: mrand.New(mrand.NewPCG(seed, 1)), patch: mrand.New(mrand.NewPCG(seed, 2)), n: n, at: at, end: at + edit}
}

type blobPRNG struct {
	base, patch *mrand.Rand
	pos, n      int64
	at, end     int64
}

func (p *blobPRNG) Read(b []byte) (int, error) {
	if p.pos >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.pos)&^7]
	if len(b) == 0 {
		return 0, errors.New("blob bytes: read buffer under 8 bytes")
	}
	for i := 0; i < len(b); i += 8 {
		v := p.base.Uint64()
		if q := p.pos + int64(i); q >= p.at && q < p.end {
			v = p.patch.Uint64()
		}
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	p.pos += int64(len(b))
	return len(b), nil
}

// waitBlob waits until n holds the reference under key naming id.
func waitBlob(ctx context.Context, n *federation.Node, key, id string) error {
	for {
		if ref, err := n.Blob(ctx, blobColl, key); err == nil && ref.Blob == id {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// BlobLoad is a blob ready to move from one node to another: background
// load for other scenarios (the latency scenario measures while a 1 GiB
// blob moves). Start it with Start.
type BlobLoad struct {
	from, to *federation.Node
	key      string
	Size     int64
}

// PrepareBlobLoad puts a blob of size pseudo-random bytes on from (in
// CollectionMedia under key) and waits until its reference reached to, so
// that Start moves only the original. from and to must be connected.
func PrepareBlobLoad(ctx context.Context, from, to *federation.Node, key string, size int64) (*BlobLoad, error) {
	ref, err := from.PutBlob(ctx, blobColl, key, blobBytes(7, size, 0, 0), federation.BlobOptions{})
	if err != nil {
		return nil, err
	}
	if err := waitBlob(ctx, to, key, ref.Blob); err != nil {
		return nil, err
	}
	return &BlobLoad{from: from, to: to, key: key, Size: size}, nil
}

// Start fetches the blob into the receiving node in the background; the
// channel yields the fetch's result (nil once it holds the whole blob).
func (l *BlobLoad) Start(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.to.FetchBlob(ctx, blobColl, l.key) }()
	return done
}

// runBlob measures media goodput (a node fetching a blob from its peer)
// against raw quic-go moving the same bytes file to file. Each round uses
// a fresh receiving node; rounds alternate which side goes first, and the
// medians are reported.
func runBlob(ctx context.Context, args []string) (result, error) {
	fs := newFlags("blob")
	sizeText := fs.String("size", "1GiB", "blob size (units: KiB, MiB, GiB, KB, MB, GB)")
	rounds := fs.Int("rounds", 1, "rounds, alternating which side goes first; medians reported")
	dirFlag := fs.String("dir", "", "directory for the nodes and files (default: a temporary one)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	size, err := parseByteSize(*sizeText)
	if err != nil || size <= 0 || *rounds < 1 {
		return result{}, fmt.Errorf("bad -size %q or -rounds %d", *sizeText, *rounds)
	}
	root, cleanup, err := benchDir(*dirFlag)
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	src := filepath.Join(root, "source")
	if err := writeFile(src, blobBytes(1, size, 0, 0)); err != nil {
		return result{}, err
	}
	p, err := newBlobPair(ctx, root)
	if err != nil {
		return result{}, err
	}
	defer p.close()
	progress("blob: putting %s on node a", *sizeText)
	f, err := os.Open(src)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	ref, err := p.a.PutBlob(ctx, blobColl, "bench", f, federation.BlobOptions{})
	_ = f.Close()
	if err != nil {
		return result{}, err
	}
	putTook := time.Since(t0)
	var ours, base []float64
	var wire int64
	for r := 1; r <= *rounds; r++ {
		b, err := p.freshReceiver(ctx, fmt.Sprintf("recv%d", r), ref.Blob)
		if err != nil {
			return result{}, err
		}
		fed := func() error {
			progress("blob: round %d: a new node fetches the original from node a", r)
			t0 := time.Now()
			if err := b.FetchBlob(ctx, blobColl, "bench"); err != nil {
				return err
			}
			took := time.Since(t0)
			st := b.BlobStats()
			if st.ChunkBytesReceived != size {
				return fmt.Errorf("received %d chunk bytes for %d", st.ChunkBytesReceived, size)
			}
			wire = st.WireReceived
			ours = append(ours, float64(size)/took.Seconds()/1e6)
			return nil
		}
		raw := func() error {
			progress("blob: round %d: raw quic-go, file to file", r)
			took, err := rawFileCopy(ctx, src, filepath.Join(root, "raw-copy"))
			base = append(base, float64(size)/took.Seconds()/1e6)
			return err
		}
		order := []func() error{raw, fed}
		if r%2 == 0 {
			order[0], order[1] = order[1], order[0]
		}
		for _, run := range order {
			if err := run(); err != nil {
				_ = b.Close()
				return result{}, err
			}
		}
		_ = b.Close()
		progress("blob: round %d: ours %.0f MB/s, raw quic-go %.0f MB/s", r, ours[len(ours)-1], base[len(base)-1])
	}
	o, bs := medianOf(ours), medianOf(base)
	ratio := o / bs
	return result{
		Scenario: "blob", Ours: o, Baseline: bs, Unit: "MB/s", Ratio: ratio,
		Target: "ratio >= 0.7", Pass: ratio >= 0.7,
		Extra: map[string]any{
			"bytes": size, "rounds_ours_MBps": ours, "rounds_raw_MBps": base, "put_s": putTook.Seconds(),
			"wire_bytes_received": wire,
		},
	}, nil
}

// freshReceiver opens a new node in root/name, trusted by a and trusting
// it, connected to it, once it holds the reference to blob id.
func (p *blobPair) freshReceiver(ctx context.Context, name, id string) (*federation.Node, error) {
	b, err := openBlobNode(ctx, filepath.Join(filepath.Dir(p.dirs[0]), name))
	if err != nil {
		return nil, err
	}
	p.a.TrustDevice(b.PublicKey())
	b.TrustDevice(p.a.PublicKey())
	if err := b.Connect(ctx, p.a.Addr(), p.a.DeviceID()); err != nil {
		_ = b.Close()
		return nil, err
	}
	if err := waitBlob(ctx, b, "bench", id); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// runBlobEdit measures what bringing a peer up to date costs after a 1 MiB
// edit in the middle of a 256 MiB blob it holds: bytes on the blob stream
// (against the 1 MiB edited), and time (against raw quic-go moving 1 MiB
// file to file).
func runBlobEdit(ctx context.Context, args []string) (result, error) {
	fs := newFlags("blob-edit")
	sizeText := fs.String("size", "256MiB", "blob size")
	editText := fs.String("edit", "1MiB", "bytes overwritten in the middle")
	dirFlag := fs.String("dir", "", "directory for the nodes and files (default: a temporary one)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	size, err1 := parseByteSize(*sizeText)
	edit, err2 := parseByteSize(*editText)
	if err1 != nil || err2 != nil || size <= 0 || edit <= 0 || edit > size {
		return result{}, fmt.Errorf("bad -size %q or -edit %q", *sizeText, *editText)
	}
	root, cleanup, err := benchDir(*dirFlag)
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	p, err := newBlobPair(ctx, root)
	if err != nil {
		return result{}, err
	}
	defer p.close()
	progress("blob-edit: %s blob on node a, fetched by node b", *sizeText)
	ref, err := p.a.PutBlob(ctx, blobColl, "doc", blobBytes(3, size, 0, 0), federation.BlobOptions{})
	if err != nil {
		return result{}, err
	}
	if err := waitBlob(ctx, p.b, "doc", ref.Blob); err != nil {
		return result{}, err
	}
	if err := p.b.FetchBlob(ctx, blobColl, "doc"); err != nil {
		return result{}, err
	}
	progress("blob-edit: %s overwritten in the middle on node a", *editText)
	at := (size/2 + 4099) &^ 7
	t0 := time.Now()
	ref, err = p.a.PutBlob(ctx, blobColl, "doc", blobBytes(3, size, at, edit), federation.BlobOptions{})
	if err != nil {
		return result{}, err
	}
	putTook := time.Since(t0)
	if err := waitBlob(ctx, p.b, "doc", ref.Blob); err != nil {
		return result{}, err
	}
	refTook := time.Since(t0) - putTook
	before := p.b.BlobStats()
	t0 = time.Now()
	if err := p.b.FetchBlob(ctx, blobColl, "doc"); err != nil {
		return result{}, err
	}
	fetchTook := time.Since(t0)
	after := p.b.BlobStats()
	wire := (after.WireReceived - before.WireReceived) + (after.WireSent - before.WireSent)
	chunks := after.ChunkBytesReceived - before.ChunkBytesReceived

	src := filepath.Join(root, "edit")
	if err := writeFile(src, blobBytes(4, edit, 0, 0)); err != nil {
		return result{}, err
	}
	rawTook, err := rawFileCopy(ctx, src, filepath.Join(root, "edit-copy"))
	if err != nil {
		return result{}, err
	}
	ratio := float64(wire) / float64(edit)
	progress("blob-edit: %d bytes on the blob stream (%d of chunk data) for a %d-byte edit: ratio %.3f; fetch %s (raw quic-go 1 edit file to file %s); re-put on a %s, reference synced in %s",
		wire, chunks, edit, ratio, fetchTook.Round(time.Millisecond), rawTook.Round(time.Millisecond), putTook.Round(time.Millisecond), refTook.Round(time.Millisecond))
	return result{
		Scenario: "blob-edit", Ours: float64(wire), Baseline: float64(edit), Unit: "bytes", Ratio: ratio,
		Target: "ratio <= 1.1", Pass: ratio <= 1.1,
		Extra: map[string]any{
			"chunk_bytes": chunks, "fetch_s": fetchTook.Seconds(), "raw_edit_copy_s": rawTook.Seconds(),
			"time_ratio": fetchTook.Seconds() / rawTook.Seconds(), "reput_s": putTook.Seconds(), "ref_sync_s": refTook.Seconds(),
		},
	}, nil
}

// benchDir returns dir, or a new temporary directory removed by cleanup.
func benchDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o700)
	}
	d, err := os.MkdirTemp("", "fedbench-blob-")
	return d, func() { _ = os.RemoveAll(d) }, err
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(f, r, make([]byte, 1<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rawFileCopy moves the file src to dst over a bare quic-go connection on
// loopback (read from the file, written to the other file, closed) and
// returns how long that took, connection set up beforehand.
func rawFileCopy(ctx context.Context, src, dst string) (time.Duration, error) {
	srvTLS, cliTLS, err := benchTLS()
	if err != nil {
		return 0, err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", srvTLS, &quic.Config{})
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	written := make(chan error, 1)
	go serveRaw(sctx, ln, func(st io.ReadWriteCloser) {
		defer st.Close()
		written <- writeFile(dst, st)
	})
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), cliTLS, &quic.Config{})
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.CloseWithError(0, "") }()
	t0 := time.Now()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := io.CopyBuffer(st, f, make([]byte, 1<<20)); err != nil {
		return 0, err
	}
	if err := st.Close(); err != nil {
		return 0, err
	}
	if err := <-written; err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}
