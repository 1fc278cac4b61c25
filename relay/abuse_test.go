package relay_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/relay"
)

// TestRelayFloodBounded: a client floods the relay with packets (to a
// pseudonym of its own that never reads, to pseudonyms nobody registered,
// oversized ones) from several connections, as fast as it can, while
// another pair of devices syncs through the same relay. The relay's rate
// and queue limits drop the flood, its resident memory stays bounded, and
// every write of the pair arrives, each within seconds.
func TestRelayFloodBounded(t *testing.T) {
	r := startRelay(t, "-conn-rate", "4000000", "-credential-rate", "8000000")
	phone, fp := relayedNode(t, "phone", "quic://"+r.ready["udp"])
	laptop, fl := relayedNode(t, "laptop", "quic://"+r.ready["udp"])
	pair(t, phone, laptop)
	sameSecret(t, phone, laptop)
	fp.blocked.Store(true)
	fl.blocked.Store(true)
	ctx := context.Background()
	if err := phone.Put(ctx, "notes", "warm", []byte("up")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the pair syncs through the relay", func() bool { return holds(laptop, "notes", "warm", "up") })
	rss0 := r.rss(t)

	// The attacker: its own credential, a sink that never reads.
	var key [32]byte
	_, _ = rand.Read(key[:])
	cred := relay.NewCredential(key, 1)
	dial := func() *relay.Client {
		c, err := relay.Dial(ctx, relay.ClientConfig{Addr: r.ready["udp"], Credential: cred})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	var sinkP relay.PseudonymOf
	_, _ = rand.Read(sinkP[:])
	sink := dial()
	if _, err := sink.Register(ctx, sinkP); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		c := dial()
		var own relay.PseudonymOf
		_, _ = rand.Read(own[:])
		if _, err := c.Register(ctx, own); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := make([]byte, 1200)
			big := make([]byte, 64<<10)
			var nowhere relay.PseudonymOf
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch {
				case n%50 == 0:
					err = c.SendPacket(sinkP, big) // above any datagram: never leaves
				case i%2 == 0:
					err = c.SendPacket(sinkP, pkt)
				default:
					_, _ = rand.Read(nowhere[:4])
					err = c.SendPacket(nowhere, pkt)
				}
				if err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}

	// The pair keeps syncing meanwhile.
	var maxRSS int64
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		key := fmt.Sprintf("during-%d", i)
		if err := phone.Put(ctx, "notes", key, []byte("flood")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "a write crosses the relay during the flood", func() bool { return holds(laptop, "notes", key, "flood") })
		worst = max(worst, time.Since(start))
		maxRSS = max(maxRSS, r.rss(t))
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	dropped := r.metric(t, "fedrelay_packets_dropped_total")
	limited := r.metric(t, `fedrelay_packets_dropped_total{reason="rate"}`) + r.metric(t, `fedrelay_packets_dropped_total{reason="queue"}`)
	received := r.metric(t, "fedrelay_packets_received_total")
	t.Logf("flood: %d packets sent by the attacker, %.0f received by the relay, %.0f dropped; relay RSS %d MiB before, at most %d MiB during; slowest write of the pair %v",
		sent.Load(), received, dropped, rss0>>20, maxRSS>>20, worst.Round(time.Millisecond))
	if limited == 0 {
		t.Errorf("the relay dropped %.0f packets, none for a rate or queue limit: no limit applied", dropped)
	}
	if maxRSS > 256<<20 {
		t.Errorf("relay RSS reached %d MiB during the flood", maxRSS>>20)
	}
	if worst > 5*time.Second {
		t.Errorf("a write of the pair took %v to cross the relay during the flood", worst)
	}
}
