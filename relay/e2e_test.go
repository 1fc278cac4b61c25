package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation"
)

// writer writes keys prefix-0, prefix-1, ... on n every interval until
// stopped, and remembers how many it wrote.
type writer struct {
	n      *federation.Node
	prefix string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	count  int
}

func startWriter(n *federation.Node, prefix string, interval time.Duration) *writer {
	w := &writer{n: n, prefix: prefix, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(interval):
			}
			w.mu.Lock()
			i := w.count
			w.mu.Unlock()
			if err := n.Put(context.Background(), "notes", fmt.Sprintf("%s-%d", w.prefix, i), []byte(fmt.Sprintf("v%d", i))); err != nil {
				return
			}
			w.mu.Lock()
			w.count++
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) finish() int {
	close(w.stop)
	<-w.done
	return w.count
}

// allHold waits until every node holds every key the writers wrote.
func allHold(t *testing.T, d time.Duration, nodes []*federation.Node, ws []*writer, counts []int) {
	t.Helper()
	eventually(t, d, "every device holds every write", func() bool {
		for _, n := range nodes {
			for j, w := range ws {
				for i := range counts[j] {
					if !holds(n, "notes", fmt.Sprintf("%s-%d", w.prefix, i), fmt.Sprintf("v%d", i)) {
						return false
					}
				}
			}
		}
		return true
	})
}

// TestRelayThreeDevicesConverge: three devices whose direct paths are
// blocked (every direct packet dropped) converge through a fedrelay
// process, one of them attached over TLS on TCP. Then the direct paths open again while
// every device keeps writing: the devices move to direct sessions (the
// relay stops forwarding) and every write reaches every device, none lost.
func TestRelayThreeDevicesConverge(t *testing.T) {
	r := startRelay(t)
	phone, fp := relayedNode(t, "phone", "quic://"+r.ready["udp"])
	laptop, fl := relayedNode(t, "laptop", "quic://"+r.ready["udp"])
	tablet, ft := relayedNode(t, "tablet", "tls://"+r.ready["tls"])
	nodes := []*federation.Node{phone, laptop, tablet}
	filters := []*filterConn{fp, fl, ft}
	pair(t, phone, laptop)
	pair(t, phone, tablet)
	sameSecret(t, nodes...)

	for _, f := range filters {
		f.blocked.Store(true)
	}
	ctx := context.Background()
	for i, n := range nodes {
		if err := n.Put(ctx, "notes", fmt.Sprintf("blocked-%d", i), []byte("through the relay")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "convergence through the relay", func() bool {
		for _, n := range nodes {
			for i := range nodes {
				if !holds(n, "notes", fmt.Sprintf("blocked-%d", i), "through the relay") {
					return false
				}
			}
		}
		return true
	})
	fwd := r.metric(t, "fedrelay_packets_forwarded_total")
	if fwd == 0 {
		t.Fatal("converged, but the relay forwarded nothing")
	}
	t.Logf("converged through the relay: %.0f packets forwarded; direct packets dropped: %d %d %d",
		fwd, fp.dropped.Load(), fl.dropped.Load(), ft.dropped.Load())

	// The direct paths come back while every device writes.
	var ws []*writer
	for i, n := range nodes {
		ws = append(ws, startWriter(n, fmt.Sprintf("move%d", i), 10*time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond)
	for _, f := range filters {
		f.blocked.Store(false)
	}
	// Once every relayed session has given way to a direct one, the relay
	// forwards nothing more, not even keep-alives.
	var last float64
	quietSince := time.Now()
	eventually(t, 90*time.Second, "every session moves to a direct path", func() bool {
		now := r.metric(t, "fedrelay_packets_forwarded_total")
		if now != last {
			last, quietSince = now, time.Now()
			return false
		}
		return time.Since(quietSince) > 3*time.Second
	})
	counts := make([]int, len(ws))
	for i, w := range ws {
		counts[i] = w.finish()
	}
	allHold(t, 30*time.Second, nodes, ws, counts)
	t.Logf("writes during the move: %v; direct packets since: %d %d %d", counts, fp.passed.Load(), fl.passed.Load(), ft.passed.Load())
	// A change in flight on the relayed session when the direct one took
	// over may arrive twice: it is recognised as held (Redundant) and not
	// applied again. Echoes (a change sent back to its origin) never.
	total, redundant := counts[0]+counts[1]+counts[2], uint64(0)
	for _, n := range nodes {
		for _, p := range n.Peers() {
			redundant += p.Redundant
			if p.Echoes != 0 {
				t.Errorf("%v: peer %v: %d echoes", n.DeviceID().Short(), p.Device.Short(), p.Echoes)
			}
		}
	}
	t.Logf("changes received twice across the move (recognised, not applied again): %d of %d writes", redundant, total)
	if redundant*20 > uint64(total) {
		t.Errorf("%d of %d changes travelled twice: more than the overlap of two sessions explains", redundant, total)
	}
}
