package relay

import (
	"context"
	"errors"
	"fmt"
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
//
// A rotation does not reach every device at once, and devices that meet
// only through the relay learn of it through the relay. So for
// RotationGrace after a new generation appears the Forwarder stays
// attached under the previous one too (its credential, its pseudonym), and
// Addrs lists a device's addresses under both: packets to a pseudonym go
// out under the generation it belongs to.
type Forwarder struct {
	cfg   ForwarderConfig
	sched core.Scheduler
	log   *slog.Logger
	q     *pq.Queue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dropped atomic.Uint64 // packets dropped (Dropped)

	mu      sync.Mutex
	atts    []*attachment // newest first: current generation, then previous
	peerGen map[PseudonymOf]uint64
}

// attachment is the connection of one generation of the mesh secret.
type attachment struct {
	gen    uint64
	key    [32]byte
	cancel context.CancelFunc
	ctx    context.Context
	retire time.Time // zero while current

	// Under Forwarder.mu.
	cur  *Client
	data *dataPath
	up   chan struct{} // closed while connected; replaced when it drops
}

// RotationGrace is how long a Forwarder stays reachable under the previous
// generation of the mesh secret after a new one appears.
const RotationGrace = 2 * time.Minute

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
	f := &Forwarder{cfg: cfg, sched: sched, log: log, q: pq.New(n), peerGen: map[PseudonymOf]uint64{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.refreshSecret()
	f.wg.Add(1)
	go f.run()
	return f, nil
}

// refreshSecret reads the mesh secret and, when it is a new generation,
// starts attaching under it and schedules the previous attachment's
// retirement. It reports whether the generation changed.
func (f *Forwarder) refreshSecret() bool {
	s, err := f.cfg.Secret()
	if err != nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.atts) > 0 && f.atts[0].gen == s.Generation && f.atts[0].key == s.Key {
		return false
	}
	ctx, cancel := context.WithCancel(f.ctx)
	a := &attachment{gen: s.Generation, key: s.Key, ctx: ctx, cancel: cancel, up: make(chan struct{})}
	now := f.sched.Now()
	for _, old := range f.atts {
		if old.retire.IsZero() {
			old.retire = now.Add(RotationGrace)
		}
	}
	f.atts = append([]*attachment{a}, f.atts...)
	f.wg.Add(1)
	go f.attachLoop(a)
	return true
}

// rotationCheck is how often the Forwarder looks for a new mesh secret.
const rotationCheck = 5 * time.Second

// run follows the mesh secret and retires old attachments.
func (f *Forwarder) run() {
	defer f.wg.Done()
	for {
		tick, stop := core.Wait(f.sched, rotationCheck)
		select {
		case <-f.ctx.Done():
			stop()
			return
		case <-tick:
		}
		stop()
		if f.refreshSecret() {
			f.log.Info("relay: mesh secret rotated; attaching under the new generation")
		}
		now := f.sched.Now()
		f.mu.Lock()
		keep := f.atts[:0]
		for _, a := range f.atts {
			if !a.retire.IsZero() && !now.Before(a.retire) {
				a.cancel()
				for p, g := range f.peerGen {
					if g == a.gen {
						delete(f.peerGen, p)
					}
				}
				continue
			}
			keep = append(keep, a)
		}
		f.atts = keep
		f.mu.Unlock()
	}
}

// attachLoop keeps a attached until it retires or the Forwarder closes.
func (f *Forwarder) attachLoop(a *attachment) {
	defer f.wg.Done()
	backoff := 100 * time.Millisecond
	failures := 0
	for a.ctx.Err() == nil {
		if f.session(a) {
			backoff, failures = 100*time.Millisecond, 0
		} else {
			backoff = min(2*backoff, 5*time.Second)
			if failures++; failures == 5 && a.ctx.Err() == nil {
				f.log.Warn("relay: cannot attach; retrying", "relay", f.cfg.Relay.Addr, "every", 5*time.Second)
			}
		}
		tick, stop := core.Wait(f.sched, backoff)
		select {
		case <-a.ctx.Done():
		case <-tick:
		}
		stop()
	}
}

// session connects under a's generation, registers and pumps packets
// until the connection ends or a retires. It reports whether it got
// connected.
func (f *Forwarder) session(a *attachment) bool {
	cc := f.cfg.Relay
	cc.Credential = NewCredential(a.key, a.gen)
	c, err := Dial(a.ctx, cc)
	if err != nil {
		f.log.Debug("relay: connect failed", "relay", cc.Addr, "err", err)
		return false
	}
	defer c.Close()
	reg, err := c.register(a.ctx, Pseudonym(a.key, a.gen, f.cfg.Self))
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
	a.cur, a.data = c, dp
	close(a.up)
	f.mu.Unlock()
	f.log.Info("relay: attached", "relay", cc.Addr, "generation", a.gen, "data_plane", dp != nil)
	defer func() {
		f.mu.Lock()
		a.cur, a.data = nil, nil
		a.up = make(chan struct{})
		f.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last PseudonymOf
		for {
			b, err := c.conn.ReceiveDatagram(a.ctx)
			if err != nil {
				return
			}
			if len(b) <= PseudonymSize {
				continue
			}
			var src PseudonymOf
			copy(src[:], b)
			f.received(a, src, b[PseudonymSize:], &last)
		}
	}()
	if dp != nil {
		go f.readData(a, dp)
	}
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
		case <-a.ctx.Done():
			stop()
			return true
		case <-done:
			stop()
			f.log.Info("relay: connection lost", "relay", cc.Addr)
			return true
		case <-tick:
		}
		stop()
	}
}

// received queues a packet from src that arrived under a's generation:
// replies go out under the same one.
// last, the previous packet's source at the caller, saves the lock while
// packets keep coming from the same peer.
func (f *Forwarder) received(a *attachment, src PseudonymOf, p []byte, last *PseudonymOf) {
	f.noteSource(a, src, last)
	f.offer(pq.Packet{B: p, From: Addr{Peer: src}})
}

// noteSource remembers the generation src's packets arrive under (see
// received).
func (f *Forwarder) noteSource(a *attachment, src PseudonymOf, last *PseudonymOf) {
	if *last != src {
		*last = src
		f.mu.Lock()
		if _, ok := f.peerGen[src]; !ok && len(f.peerGen) < maxPeerGen {
			f.peerGen[src] = a.gen
		}
		f.mu.Unlock()
	}
}

// maxPeerGen bounds the pseudonyms whose generation the Forwarder
// remembers.
const maxPeerGen = 4096

// bindRetry is how often an unanswered data-plane binding is repeated.
const bindRetry = 250 * time.Millisecond

// dataPath is the UDP data plane of one attachment (see relay/server's
// data.go): once the relay answered a binding, packets go there as plain
// UDP instead of as QUIC datagrams, written and read in batches.
//
// Packets to send wait in a slice under a mutex, in pooled buffers, and
// the writer takes them all at once: a channel would cost a hand-off per
// packet, and at a few hundred thousand packets a second those were a
// large share of the relayed path's cost.
type dataPath struct {
	pc    net.PacketConn
	bc    *udpbatch.Conn
	relay *net.UDPAddr
	token [TokenSize]byte
	bound atomic.Bool
	ready chan struct{} // one token while packets wait for the writer
	done  chan struct{} // closed when the attachment ends

	mu  sync.Mutex
	out []*[]byte // packets for the writer, at most dataQueue
}

// dataQueue bounds the packets waiting for the data-plane writer.
const dataQueue = 1024

// sendBuffer is the size of the pooled buffers of outgoing data-plane
// packets: the header and the largest packet a path sends, with room.
const sendBuffer = 1 + TokenSize + PseudonymSize + 1500

var sendPool = sync.Pool{New: func() any { b := make([]byte, 0, sendBuffer); return &b }}

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
	return &dataPath{pc: pc, bc: udpbatch.New(pc), relay: ra, token: reg.token, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

func (d *dataPath) close() {
	close(d.done)
	_ = d.pc.Close()
}

func (d *dataPath) bind() {
	_, _ = d.pc.WriteTo(append([]byte{DataBind}, d.token[:]...), d.relay)
}

// send queues p for dst; it reports false when the queue is full or p is
// larger than any packet a path sends.
func (d *dataPath) send(dst PseudonymOf, p []byte) bool {
	if len(p) > sendBuffer-1-TokenSize-PseudonymSize {
		return false
	}
	bp := sendPool.Get().(*[]byte)
	b := append((*bp)[:0], DataSend)
	b = append(b, d.token[:]...)
	b = append(b, dst[:]...)
	b = append(b, p...)
	*bp = b
	d.mu.Lock()
	if len(d.out) >= dataQueue {
		d.mu.Unlock()
		sendPool.Put(bp)
		return false
	}
	d.out = append(d.out, bp)
	first := len(d.out) == 1
	d.mu.Unlock()
	if first {
		select {
		case d.ready <- struct{}{}:
		default:
		}
	}
	return true
}

// writeData writes the queued packets, as many per system call as are
// waiting, until the attachment ends.
func (d *dataPath) writeData() {
	var bufs, spare []*[]byte
	pkts := make([][]byte, 0, dataQueue)
	var scratch []byte
	for {
		select {
		case <-d.done:
			return
		case <-d.ready:
		}
		d.mu.Lock()
		bufs, d.out, spare = d.out, spare[:0], nil
		d.mu.Unlock()
		pkts = pkts[:0]
		for _, bp := range bufs {
			pkts = append(pkts, *bp)
		}
		udpbatch.Runs(pkts, func(run [][]byte) {
			scratch, _ = d.bc.WriteRun(run, d.relay, scratch) // a failed write is a lost packet
		})
		clear(pkts)
		for _, bp := range bufs {
			sendPool.Put(bp)
		}
		clear(bufs)
		spare = bufs
	}
}

// readData queues the packets the relay delivers on the data plane until
// its socket closes: the packets of one read (the kernel coalesces up to
// about forty) in one batch.
func (f *Forwarder) readData(a *attachment, d *dataPath) {
	buf := make([]byte, udpbatch.ReadBuffer)
	oob := make([]byte, udpbatch.OOBSize)
	var last PseudonymOf
	var batch []pq.Packet
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
			f.noteSource(a, src, &last)
			batch = append(batch, pq.Copy(pkt[1+PseudonymSize:], Addr{Peer: src}))
		}
	}
	for {
		err := d.bc.Read(buf, oob, handle)
		if len(batch) > 0 {
			if n := f.q.OfferBatch(batch); n < len(batch) {
				f.dropped.Add(uint64(len(batch) - n))
			}
			clear(batch)
			batch = batch[:0]
		}
		if err != nil {
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

// WaitAttached waits until the Forwarder is attached to the relay under
// the current generation of the mesh secret.
func (f *Forwarder) WaitAttached(ctx context.Context) error {
	for {
		f.mu.Lock()
		var up chan struct{}
		if len(f.atts) > 0 {
			up = f.atts[0].up
		}
		f.mu.Unlock()
		if up == nil {
			up = make(chan struct{}) // no secret yet: wait for ctx
		}
		select {
		case <-up:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-f.ctx.Done():
			return net.ErrClosed
		}
	}
}

// Addrs returns the relay addresses of id: under the current generation
// of the mesh secret, then under the previous one while it is still
// served. It is an AddrSource for the node's redial loop.
func (f *Forwarder) Addrs(id core.DeviceID) []string {
	if id == f.cfg.Self {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.atts {
		p := Pseudonym(a.key, a.gen, id)
		if _, ok := f.peerGen[p]; !ok && len(f.peerGen) < maxPeerGen {
			f.peerGen[p] = a.gen
		}
		out = append(out, Addr{Peer: p}.String())
	}
	return out
}

// Resolve turns a relay address into the net.Addr to write packets to.
func (f *Forwarder) Resolve(addr string) (net.Addr, bool) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, false
	}
	return a, true
}

// attachmentFor is the attachment to send to p under: the one of p's
// generation when known and still there, else the current one (mu held).
func (f *Forwarder) attachmentForLocked(p PseudonymOf) *attachment {
	if g, ok := f.peerGen[p]; ok {
		for _, a := range f.atts {
			if a.gen == g {
				return a
			}
		}
	}
	if len(f.atts) == 0 {
		return nil
	}
	return f.atts[0]
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
	var c *Client
	var dp *dataPath
	if att := f.attachmentForLocked(a.Peer); att != nil {
		c, dp = att.cur, att.data
	}
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
	_ = c.sendPacket(a.Peer, b) // an error: the connection is ending; the loop reconnects
	return len(b), nil
}

// Close detaches from the relay. Idempotent.
func (f *Forwarder) Close() error {
	f.cancel()
	_ = f.q.Close()
	f.wg.Wait()
	return nil
}

// LocalAddr is this device's own relay address under the current
// generation of the mesh secret.
func (f *Forwarder) LocalAddr() net.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.atts) == 0 {
		return Addr{}
	}
	a := f.atts[0]
	return Addr{Peer: Pseudonym(a.key, a.gen, f.cfg.Self)}
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

// SetReadBuffer accepts quic-go's request for a large receive buffer: the
// Forwarder's sockets get theirs when they open (SetSocketBuffers).
func (f *Forwarder) SetReadBuffer(int) error { return nil }

// SetWriteBuffer accepts quic-go's request for a large send buffer (see
// SetReadBuffer).
func (f *Forwarder) SetWriteBuffer(int) error { return nil }
