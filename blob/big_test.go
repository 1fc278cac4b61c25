//go:build !race

// GiB-sized tests: too slow under the race detector; .ci/run runs them in
// a separate non-race line.

package blob

import (
	"context"
	"io"
	"testing"
)

// editReader is randReader(seed, n) with [at, at+len) overwritten by other
// pseudo-random bytes.
type editReader struct {
	base, patch io.Reader
	pos, at, n  int64
}

func editedReader(seed uint64, n, at, size int64) io.Reader {
	return &editReader{base: randReader(seed, n), patch: randReader(seed+1000, size), at: at, n: size}
}

func (e *editReader) Read(b []byte) (int, error) {
	n, err := e.base.Read(b)
	for i := 0; i < n; {
		p := e.pos + int64(i)
		if p < e.at || p >= e.at+e.n {
			i++
			continue
		}
		k := min(int64(n-i), e.at+e.n-p)
		if _, err := io.ReadFull(e.patch, b[i:i+int(k)]); err != nil {
			return 0, err
		}
		i += int(k)
	}
	e.pos += int64(n)
	return n, err
}

// TestEditSendsOnlyTouchedChunks puts a 256 MiB blob, transfers it, edits
// 1 MiB in its middle, and checks that bringing the copy up to date moves
// at most 1.1 MiB of chunk data.
func TestEditSendsOnlyTouchedChunks(t *testing.T) {
	const size, edit = 256 << 20, 1 << 20
	src, dst := openStore(t, testKey()), openStore(t, testKey())
	ctx := context.Background()
	m1, err := src.Put(ctx, randReader(9, size))
	if err != nil {
		t.Fatal(err)
	}
	if err := transfer(t, src, dst, m1.ID(), nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	m2, err := src.Put(ctx, editedReader(9, size, size/2+12345, edit))
	if err != nil {
		t.Fatal(err)
	}
	if m2.ID() == m1.ID() {
		t.Fatal("edit changed nothing")
	}
	var sc, rc Counters
	if err := transfer(t, src, dst, m2.ID(), nil, &sc, &rc); err != nil {
		t.Fatal(err)
	}
	sent := sc.ChunkBytesSent.Load()
	wire := rc.WireRecv.Load() + rc.WireSent.Load()
	t.Logf("1 MiB edit in 256 MiB: %d chunk bytes sent (%.3f MiB, %d chunks), %d manifest bytes, %d bytes on the stream (%.3f MiB)",
		sent, float64(sent)/(1<<20), sc.ChunksSent.Load(), sc.ManifestBytesSent.Load(), wire, float64(wire)/(1<<20))
	if sent < edit || float64(sent) > 1.1*edit {
		t.Fatalf("sent %d bytes of chunks for a 1 MiB edit, want 1 MiB to 1.1 MiB", sent)
	}
	if float64(wire) > 1.1*edit {
		t.Fatalf("%d bytes on the stream (both ways, manifest included) for a 1 MiB edit, want at most 1.1 MiB", wire)
	}
	r, _, err := dst.Open(ctx, m2.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // checks every chunk and the digest
		t.Fatal(err)
	}
}
