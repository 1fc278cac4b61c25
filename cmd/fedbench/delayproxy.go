package main

import (
	"net"
	"sync"
	"time"
)

// delayProxy forwards UDP datagrams between clients and one target,
// holding every datagram for a fixed delay in each direction: a path with
// a round-trip time of twice the delay, for the connect scenario. Each
// client address gets its own upstream socket, so the target sees one peer
// per client. Order is kept within each direction.
type delayProxy struct {
	ln     *net.UDPConn
	target *net.UDPAddr
	delay  time.Duration
	toSrv  chan delayed

	mu  sync.Mutex
	ups map[string]*net.UDPConn
	wg  sync.WaitGroup
}

type delayed struct {
	due  time.Time
	pkt  []byte
	send func([]byte)
}

func newDelayProxy(target string, delay time.Duration) (*delayProxy, error) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, target: ta, delay: delay, toSrv: make(chan delayed, 4096), ups: map[string]*net.UDPConn{}}
	p.wg.Add(2)
	go p.deliver(p.toSrv)
	go p.readClients()
	return p, nil
}

func (p *delayProxy) addr() string { return p.ln.LocalAddr().String() }

// deliver sends each datagram of line once it is due.
func (p *delayProxy) deliver(line <-chan delayed) {
	defer p.wg.Done()
	for d := range line {
		if w := time.Until(d.due); w > 0 {
			time.Sleep(w)
		}
		d.send(d.pkt)
	}
}

func (p *delayProxy) readClients() {
	defer p.wg.Done()
	defer close(p.toSrv)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		up, err := p.upstream(from)
		if err != nil {
			continue
		}
		p.toSrv <- delayed{due: time.Now().Add(p.delay), pkt: append([]byte(nil), buf[:n]...), send: func(b []byte) { _, _ = up.Write(b) }}
	}
}

// upstream is the socket that carries from's datagrams to the target,
// created with its reply path on first use.
func (p *delayProxy) upstream(from *net.UDPAddr) (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if up, ok := p.ups[from.String()]; ok {
		return up, nil
	}
	up, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, p.target)
	if err != nil {
		return nil, err
	}
	p.ups[from.String()] = up
	back := make(chan delayed, 4096)
	p.wg.Add(2)
	go p.deliver(back)
	go func() {
		defer p.wg.Done()
		defer close(back)
		buf := make([]byte, 64<<10)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			back <- delayed{due: time.Now().Add(p.delay), pkt: append([]byte(nil), buf[:n]...), send: func(b []byte) { _, _ = p.ln.WriteToUDP(b, from) }}
		}
	}()
	return up, nil
}

func (p *delayProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for _, up := range p.ups {
		_ = up.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
