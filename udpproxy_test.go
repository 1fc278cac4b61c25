package federation_test

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// proxyFaults are per-packet probabilities.
type proxyFaults struct{ drop, duplicate, delay float64 }

// proxyCounts counts what a udpProxy did.
type proxyCounts struct{ packets, dropped, duplicated, delayed int }

func (c *proxyCounts) add(o proxyCounts) {
	c.packets += o.packets
	c.dropped += o.dropped
	c.duplicated += o.duplicated
	c.delayed += o.delayed
}

// udpProxy forwards UDP datagrams between clients and one target, in both
// directions, dropping, duplicating and delaying some: a lossy network
// path for QUIC on loopback.
type udpProxy struct {
	front  *net.UDPConn
	target *net.UDPAddr
	faults proxyFaults

	mu    sync.Mutex
	rng   *rand.Rand
	backs map[string]*net.UDPConn // one upstream socket per client
	count proxyCounts
	wg    sync.WaitGroup
}

// startUDPProxy listens on loopback and forwards to target until the test
// ends.
func startUDPProxy(t *testing.T, target string, seed uint64, f proxyFaults) *udpProxy {
	t.Helper()
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{front: front, target: ta, faults: f, rng: rand.New(rand.NewPCG(seed, 7)), backs: map[string]*net.UDPConn{}}
	p.wg.Add(1)
	go p.serveFront()
	t.Cleanup(p.close)
	return p
}

func (p *udpProxy) addr() string { return p.front.LocalAddr().String() }

func (p *udpProxy) counts() proxyCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

func (p *udpProxy) close() {
	_ = p.front.Close()
	p.mu.Lock()
	for _, b := range p.backs {
		_ = b.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// serveFront forwards clients' datagrams to the target.
func (p *udpProxy) serveFront() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, client, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		back, err := p.back(client)
		if err != nil {
			return
		}
		p.forward(buf[:n], func(b []byte) { _, _ = back.Write(b) })
	}
}

// back returns the upstream socket of client, starting its reader.
func (p *udpProxy) back(client *net.UDPAddr) (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.backs[client.String()]; ok {
		return b, nil
	}
	b, err := net.DialUDP("udp", nil, p.target)
	if err != nil {
		return nil, err
	}
	p.backs[client.String()] = b
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			p.forward(buf[:n], func(d []byte) { _, _ = p.front.WriteToUDP(d, client) })
		}
	}()
	return b, nil
}

// forward sends one datagram through send, or drops, duplicates or delays
// it.
func (p *udpProxy) forward(d []byte, send func([]byte)) {
	p.mu.Lock()
	p.count.packets++
	x := p.rng.Float64()
	delay := time.Duration(2+p.rng.IntN(15)) * time.Millisecond
	f := p.faults
	switch {
	case x < f.drop:
		p.count.dropped++
	case x < f.drop+f.duplicate:
		p.count.duplicated++
	case x < f.drop+f.duplicate+f.delay:
		p.count.delayed++
	}
	p.mu.Unlock()
	switch {
	case x < f.drop:
	case x < f.drop+f.duplicate:
		send(d)
		send(d)
	case x < f.drop+f.duplicate+f.delay:
		c := append([]byte(nil), d...)
		time.AfterFunc(delay, func() { send(c) })
	default:
		send(d)
	}
}
