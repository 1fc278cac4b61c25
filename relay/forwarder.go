package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/relay/internal/pq"
	"github.com/devicemesh/federation/relay/internal/udpbatch"
)

// Scheme starts every relay address: "relay:" and the destination's
// pseudonym in hex.
const Scheme = "relay:"

// Addr is a device reached through the relay, named by its pseudonym.
type Addr struct{ Peer PseudonymOf }

// Network is "relay".
func (a Addr) Network() string { return "relay" }

// String is the relay address, Scheme and the pseudonym in hex.
func (a Addr) String() string { return Scheme + a.Peer.String() }

// ParseAddr parses a relay address.
func ParseAddr(s string) (Addr, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Addr{}, fmt.Errorf("%w: %q", ErrBadAddr, s)
	}
	p, err := ParsePseudonym(rest)
	if err != nil {
		return Addr{}, err
	}
	return Addr{Peer: p}, nil
}

// ForwarderConfig configures NewForwarder.
type ForwarderConfig struct {
	// Relay is the relay to attach to: Addr, TLS, Timeout and Logger of
	// its ClientConfig (the credential comes from Secret).
	Relay ClientConfig
	// Self is this device's id: the Forwarder registers its pseudonym.
	Self core.DeviceID
	// Secret returns the current mesh secret (Node.MeshSecret). The
	// credential and the pseudonyms change with its generation.
	Secret func() (registry.Secret, error)
	// Clock runs the reconnection and rotation timers. nil: system time.
	Clock core.Scheduler
	// QueuePackets bounds the packets received and not read yet (default
	// 1024; beyond, they are dropped).
	QueuePackets int
}

// Forwarder is this device's attachment to a relay, as the net.PacketConn
// that the node's QUIC transport runs a path on (transport.QUIC.AddPath):
// packets written to a relay Addr go to that device through the relay;
// packets from other devices are read with their relay Addr. It keeps the
// connection up (reconnecting with backoff) and follows rotations of the
// mesh secret. While it is not connected, packets are dropped, as on an
// unplugged link: QUIC retransmits them.
type Forwarder struct {
	cfg   ForwarderConfig
	sched core.Scheduler
	log   *slog.Logger
	q     *pq.Queue
	wake  chan struct{} // pokes the loop (Close)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped atomic.Uint64 // received packets dropped, the queue full

	mu      sync.Mutex
	cur     *Client
	data    *dataPath // cur's data plane, if any
	gen     uint64
	key     [32]byte
	haveKey bool
	up      chan struct{} // closed while connected; replaced when it drops
}

// NewForwarder starts attaching to the relay in the background.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Secret == nil || cfg.Relay.Addr == "" {
		return nil, fmt.Errorf("%w: relay forwarder needs Relay.Addr and Secret", core.ErrInvalidConfig)
	}
	sched := cfg.Clock
	if sched == nil {
		sched = core.SystemClock{}
	}
	log := cfg.Relay.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.QueuePackets
	if n <= 0 {
		n = 1024
	}
	f := &Forwarder{cfg: cfg, sched: sched, log: log, q: pq.New(n), up: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.refreshSecret()
	f.wg.Add(1)
	go f.run()
	return f, nil
}

// refreshSecret reads the mesh secret; it reports whether its generation
// changed.
func (f *Forwarder) refreshSecret() bool {
	s, err := f.cfg.Secret()
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := !f.haveKey || s.Generation != f.gen || s.Key != f.key
	f.gen, f.key, f.haveKey = s.Generation, s.Key, true
	return changed
}

func (f *Forwarder) secret() (uint64, [32]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen, f.key, f.haveKey
}

// rotationCheck is how often the Forwarder looks for a new mesh secret.
const rotationCheck = 5 * time.Second

func (f *Forwarder) run() {
	defer f.wg.Done()
	backoff := 100 * time.Millisecond
	for f.ctx.Err() == nil {
		ok := f.session()
		if ok {
			backoff = 100 * time.Millisecond
		} else {
			backoff = min(2*backoff, 5*time.Second)
		}
		tick, stop := core.Wait(f.sched, backoff)
		select {
		case <-f.ctx.Done():
		case <-tick:
		}
		stop()
	}
}

// session connects, registers and pumps packets until the connection
// ends or the mesh secret rotates. It reports whether it got connected.
func (f *Forwarder) session() bool {
	f.refreshSecret()
	gen, key, ok := f.secret()
	if !ok {
		return false
	}
	cc := f.cfg.Relay
	cc.Credential = NewCredential(key, gen)
	c, err := Dial(f.ctx, cc)
	if err != nil {
		f.log.Debug("relay: connect failed", "relay", cc.Addr, "err", err)
		return false
	}
	defer c.Close()
	reg, err := c.register(f.ctx, Pseudonym(key, gen, f.cfg.Self))
	if err != nil {
		f.log.Debug("relay: register failed", "relay", cc.Addr, "err", err)
		return false
	}
	defer reg.st.Close()
	dp := f.openData(c, reg)
	if dp != nil {
		defer dp.close()
		go dp.writeData()
	}
	f.mu.Lock()
	f.cur, f.data = c, dp
	close(f.up)
	f.mu.Unlock()
	f.log.Info("relay: attached", "relay", cc.Addr, "data_plane", dp != nil)
	defer func() {
		f.mu.Lock()
		f.cur, f.data = nil, nil
		f.up = make(chan struct{})
		f.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b, err := c.conn.ReceiveDatagram(f.ctx)
			if err != nil {
				return
			}
			if len(b) <= PseudonymSize {
				continue
			}
			var src PseudonymOf
			copy(src[:], b)
			f.offer(pq.Packet{B: b[PseudonymSize:], From: Addr{Peer: src}})
		}
	}()
	if dp != nil {
		go f.readData(dp)
	}
	lastCheck := f.sched.Now()
	for {
		// Bind the data plane every bindRetry until the relay answers,
		// then every rotationCheck (NAT mappings, a restarted relay).
		every := rotationCheck
		if dp != nil {
			dp.bind()
			if !dp.bound.Load() {
				every = bindRetry
			}
		}
		tick, stop := core.Wait(f.sched, every)
		select {
		case <-f.ctx.Done():
			stop()
			return true
		case <-done:
			stop()
			f.log.Info("relay: connection lost", "relay", cc.Addr)
			return true
		case <-tick:
		}
		stop()
		if now := f.sched.Now(); now.Sub(lastCheck) >= rotationCheck {
			lastCheck = now
			if f.refreshSecret() {
				f.log.Info("relay: mesh secret rotated; reattaching")
				return true
			}
		}
	}
}

// bindRetry is how often an unanswered data-plane binding is repeated.
const bindRetry = 250 * time.Millisecond

// dataPath is the UDP data plane of one attachment (see relay/server's
// data.go): once the relay answered a binding, packets go there as plain
// UDP instead of as QUIC datagrams, written and read in batches.
type dataPath struct {
	pc    net.PacketConn
	bc    *udpbatch.Conn
	relay *net.UDPAddr
	token [TokenSize]byte
	bound atomic.Bool
	out   chan []byte   // packets for the writer
	done  chan struct{} // closed when the attachment ends
}

// dataQueue bounds the packets waiting for the data-plane writer.
const dataQueue = 1024

// openData opens the data plane of an attachment over UDP whose relay
// offers one; nil otherwise (packets go as QUIC datagrams).
func (f *Forwarder) openData(c *Client, reg registration) *dataPath {
	if !c.udp || reg.port == 0 {
		return nil
	}
	ra, err := net.ResolveUDPAddr("udp", net.JoinHostPort(c.host, strconv.Itoa(int(reg.port))))
	if err != nil {
		return nil
	}
	network := "udp6"
	if ra.IP.To4() != nil {
		network = "udp4"
	}
	pc, err := net.ListenPacket(network, ":0")
	if err != nil {
		return nil
	}
	SetSocketBuffers(pc)
	return &dataPath{pc: pc, bc: udpbatch.New(pc), relay: ra, token: reg.token, out: make(chan []byte, dataQueue), done: make(chan struct{})}
}

func (d *dataPath) close() {
	close(d.done)
	_ = d.pc.Close()
}

func (d *dataPath) bind() {
	_, _ = d.pc.WriteTo(append([]byte{DataBind}, d.token[:]...), d.relay)
}

// send queues p for dst; it reports false when the queue is full.
func (d *dataPath) send(dst PseudonymOf, p []byte) bool {
	b := make([]byte, 0, 1+TokenSize+PseudonymSize+len(p))
	b = append(b, DataSend)
	b = append(b, d.token[:]...)
	b = append(b, dst[:]...)
	b = append(b, p...)
	select {
	case d.out <- b:
		return true
	default:
		return false
	}
}

// writeData writes the queued packets, as many per system call as are
// waiting, until the attachment ends.
func (d *dataPath) writeData() {
	pkts := make([][]byte, 0, 64)
	var scratch []byte
	for {
		select {
		case <-d.done:
			return
		case b := <-d.out:
			pkts = append(pkts[:0], b)
		}
	more:
		for len(pkts) < cap(pkts) {
			select {
			case b := <-d.out:
				pkts = append(pkts, b)
			default:
				break more
			}
		}
		udpbatch.Runs(pkts, func(run [][]byte) {
			scratch, _ = d.bc.WriteRun(run, d.relay, scratch) // a failed write is a lost packet
		})
		clear(pkts)
	}
}

// readData queues the packets the relay delivers on the data plane until
// its socket closes.
func (f *Forwarder) readData(d *dataPath) {
	buf := make([]byte, udpbatch.ReadBuffer)
	oob := make([]byte, udpbatch.OOBSize)
	handle := func(pkt []byte, from net.Addr) {
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(d.relay.IP) || ua.Port != d.relay.Port {
			return // only the relay speaks on this socket
		}
		switch {
		case len(pkt) == 1 && pkt[0] == DataBound:
			d.bound.Store(true)
		case len(pkt) > 1+PseudonymSize && pkt[0] == DataDeliver:
			var src PseudonymOf
			copy(src[:], pkt[1:])
			f.offer(pq.Packet{B: append([]byte(nil), pkt[1+PseudonymSize:]...), From: Addr{Peer: src}})
		}
	}
	for {
		if err := d.bc.Read(buf, oob, handle); err != nil {
			select {
			case <-d.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

// WaitAttached waits until the Forwarder is attached to the relay.
func (f *Forwarder) WaitAttached(ctx context.Context) error {
	f.mu.Lock()
	up := f.up
	f.mu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-f.ctx.Done():
		return net.ErrClosed
	}
}

// Addrs returns the relay address of id under the current mesh secret:
// it is an AddrSource for the node's redial loop.
func (f *Forwarder) Addrs(id core.DeviceID) []string {
	gen, key, ok := f.secret()
	if !ok || id == f.cfg.Self {
		return nil
	}
	return []string{Addr{Peer: Pseudonym(key, gen, id)}.String()}
}

// Resolve turns a relay address into the net.Addr to write packets to.
func (f *Forwarder) Resolve(addr string) (net.Addr, bool) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, false
	}
	return a, true
}

// ReadFrom returns the next packet from another device, with its Addr.
func (f *Forwarder) ReadFrom(b []byte) (int, net.Addr, error) { return f.q.ReadFrom(b) }

// WriteTo sends b to the device at addr (an Addr) through the relay.
func (f *Forwarder) WriteTo(b []byte, addr net.Addr) (int, error) {
	a, ok := addr.(Addr)
	if !ok {
		return 0, fmt.Errorf("%w: %v", ErrBadAddr, addr)
	}
	f.mu.Lock()
	c, dp := f.cur, f.data
	f.mu.Unlock()
	if c == nil {
		return len(b), nil // not attached: lost, as on an unplugged link
	}
	if dp != nil && dp.bound.Load() {
		if !dp.send(a.Peer, b) {
			f.dropped.Add(1)
		}
		return len(b), nil
	}
	if err := c.sendPacket(a.Peer, b); err != nil && !errors.Is(err, io.EOF) {
		return len(b), nil // the connection is ending; the loop reconnects
	}
	return len(b), nil
}

// Close detaches from the relay. Idempotent.
func (f *Forwarder) Close() error {
	f.cancel()
	_ = f.q.Close()
	f.wg.Wait()
	return nil
}

// LocalAddr is this device's own relay address.
func (f *Forwarder) LocalAddr() net.Addr {
	gen, key, _ := f.secret()
	return Addr{Peer: Pseudonym(key, gen, f.cfg.Self)}
}

// SetDeadline sets the read deadline.
func (f *Forwarder) SetDeadline(t time.Time) error { return f.q.SetReadDeadline(t) }

// SetReadDeadline sets the read deadline.
func (f *Forwarder) SetReadDeadline(t time.Time) error { return f.q.SetReadDeadline(t) }

// SetWriteDeadline does nothing: writes never block.
func (f *Forwarder) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*Forwarder)(nil)

// socketBuffer is the receive and send buffer asked for data-plane
// sockets: the default (about 200 KiB) overflows at a few hundred Mbit/s
// and every overflow is a loss that QUIC's congestion control pays for.
const socketBuffer = 8 << 20

// SetSocketBuffers enlarges pc's socket buffers when it is a UDP socket
// (best effort: the kernel caps them at net.core.rmem_max / wmem_max).
func SetSocketBuffers(pc net.PacketConn) {
	if u, ok := pc.(*net.UDPConn); ok {
		_ = u.SetReadBuffer(socketBuffer)
		_ = u.SetWriteBuffer(socketBuffer)
	}
}

// offer queues a received packet, or counts it dropped.
func (f *Forwarder) offer(p pq.Packet) {
	if !f.q.Offer(p) {
		f.dropped.Add(1)
	}
}

// Dropped returns how many packets the Forwarder dropped: received ones
// the transport did not read in time (QueuePackets full), and sent ones
// the data plane could not write as fast.
func (f *Forwarder) Dropped() uint64 { return f.dropped.Load() }
