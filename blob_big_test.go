//go:build !race

// GiB-sized blob tests: too slow under the race detector; .ci/run runs
// them in a separate non-race line.

package federation_test

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation"
)

// heapSampler records the high-water mark of the Go heap (objects, live
// or not yet collected) while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := heapBytes(); v > h.peak {
				h.peak = v
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) done() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak
}

// TestBlobGiBMovesInBoundedMemory moves a 1 GiB blob between two nodes
// over QUIC on loopback (both in this process) and checks that the Go
// heap never grows by more than 64 MiB over its level before the transfer:
// neither side holds the blob, only chunks and transport buffers.
func TestBlobGiBMovesInBoundedMemory(t *testing.T) {
	const size = 1 << 30
	ctx := context.Background()
	a, b := blobNode(t, t.TempDir(), blobKey(t)), blobNode(t, t.TempDir(), blobKey(t))
	linkBlobNodes(t, a, b)
	put := startHeapSampler()
	ref, err := a.PutBlob(ctx, federation.CollectionMedia, "big", blobData(5, size), federation.BlobOptions{})
	putPeak := put.done()
	if err != nil {
		t.Fatal(err)
	}
	waitBlobRef(t, b, federation.CollectionMedia, "big", ref.Blob)
	runtime.GC()
	base := heapBytes()
	h := startHeapSampler()
	start := time.Now()
	err = b.FetchBlob(ctx, federation.CollectionMedia, "big")
	took := time.Since(start)
	peak := h.done()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 GiB fetched in %s (%.0f MB/s); heap before %.1f MiB, peak %.1f MiB (+%.1f MiB); put peak %.1f MiB",
		took.Round(time.Millisecond), size/took.Seconds()/1e6, mib(base), mib(peak), mib(peak-min(peak, base)), mib(putPeak))
	if peak > base+64<<20 {
		t.Fatalf("heap peaked at %.1f MiB, %.1f MiB over its level before the transfer; want at most 64 MiB more", mib(peak), mib(peak-base))
	}
	if s := b.BlobStats(); s.ChunkBytesReceived != size {
		t.Fatalf("received %d chunk bytes for %d", s.ChunkBytesReceived, size)
	}
	r, _, err := b.OpenBlob(ctx, federation.CollectionMedia, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !sameStream(t, blobData(5, size), r) {
		t.Fatal("fetched blob differs")
	}
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }
