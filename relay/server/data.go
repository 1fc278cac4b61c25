package server

import (
	"crypto/rand"
	"errors"
	"net"
	"time"

	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/internal/udpbatch"
)

// The data plane. A client attached over UDP gets a token when it
// registers its pseudonym, binds the token to its UDP address with a
// DataBind packet to the data port, then sends and receives forwarded
// packets there as plain UDP: [DataSend][token][destination][packet] in,
// [DataDeliver][source][packet] out. The packets are the devices' own
// end-to-end encrypted QUIC packets, so no second layer of encryption is
// needed; what the relay does per packet is a token lookup and one write.
// A client whose binding gets no answer (UDP blocked, a TLS-over-TCP
// attachment) keeps sending QUIC datagrams on its connection instead.

// dataReaders is how many goroutines read the data socket: one, so that
// packets leave in the order they came (two readers reorder them, and QUIC
// takes reordering for loss and slows down).
const dataReaders = 1

// issueToken gives c a fresh data-plane token and returns it with the
// data port (0 without a data plane).
func (s *Server) issueToken(c *client) ([relay.TokenSize]byte, uint16) {
	var tok [relay.TokenSize]byte
	if s.data == nil {
		return tok, 0
	}
	_, _ = rand.Read(tok[:])
	s.mu.Lock()
	if c.hasToken {
		delete(s.tokens, c.token)
	}
	c.token, c.hasToken = tok, true
	s.tokens[tok] = c
	s.mu.Unlock()
	return tok, uint16(s.data.LocalAddr().(*net.UDPAddr).Port)
}

func (s *Server) byToken(b []byte) *client {
	var tok [relay.TokenSize]byte
	copy(tok[:], b)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// sendData delivers b (source pseudonym and packet) to addr at once.
func (s *Server) sendData(b []byte, addr net.Addr) {
	out := make([]byte, 1+len(b))
	out[0] = relay.DataDeliver
	copy(out[1:], b)
	if _, err := s.data.WriteTo(out, addr); err != nil {
		s.m.dropped.WithLabelValues("send").Inc()
		return
	}
	s.m.packetsOut.Inc()
	s.m.bytesOut.Add(float64(len(out)))
}

// outbox collects the data-plane packets a read produced, to be written
// in as few system calls as possible (udpbatch).
type outbox struct {
	pkts    [][]byte
	addrs   []net.Addr
	scratch []byte
	free    [][]byte // buffers of written packets, for the next ones
}

// outboxFree bounds the buffers an outbox keeps for reuse.
const outboxFree = 256

// buf returns a buffer of n bytes: a written packet's when one is free
// and large enough. Reusing them spares an allocation a packet, and the
// garbage collection that follows.
func (o *outbox) buf(n int) []byte {
	if k := len(o.free); k > 0 && cap(o.free[k-1]) >= n {
		b := o.free[k-1][:n]
		o.free[k-1] = nil
		o.free = o.free[:k-1]
		return b
	}
	return make([]byte, n, max(n, 1+relay.PseudonymSize+1500))
}

func (o *outbox) add(b []byte, addr net.Addr) {
	pkt := make([]byte, 1+len(b))
	pkt[0] = relay.DataDeliver
	copy(pkt[1:], b)
	o.addRaw(pkt, addr)
}

func (o *outbox) addRaw(pkt []byte, addr net.Addr) {
	o.pkts = append(o.pkts, pkt)
	o.addrs = append(o.addrs, addr)
}

// flush writes the collected packets: each run for one address in
// segmented sends.
func (s *Server) flush(bc *udpbatch.Conn, o *outbox) {
	for i := 0; i < len(o.pkts); {
		j := i + 1
		for j < len(o.pkts) && o.addrs[j] == o.addrs[i] {
			j++
		}
		ua, _ := o.addrs[i].(*net.UDPAddr)
		udpbatch.Runs(o.pkts[i:j], func(run [][]byte) {
			var err error
			if ua != nil {
				o.scratch, err = bc.WriteRun(run, ua, o.scratch)
			}
			if err != nil || ua == nil {
				s.m.dropped.WithLabelValues("send").Add(float64(len(run)))
				return
			}
			s.m.packetsOut.Add(float64(len(run)))
			for _, p := range run {
				s.m.bytesOut.Add(float64(len(p)))
			}
		})
		i = j
	}
	for _, p := range o.pkts {
		if len(o.free) < outboxFree && cap(p) > 1+relay.PseudonymSize {
			o.free = append(o.free, p)
		}
	}
	clear(o.pkts)
	clear(o.addrs)
	o.pkts, o.addrs = o.pkts[:0], o.addrs[:0]
}

// dataLoop reads the data socket until it closes.
func (s *Server) dataLoop() {
	defer s.wg.Done()
	bc := udpbatch.New(s.data)
	buf := make([]byte, udpbatch.ReadBuffer)
	oob := make([]byte, udpbatch.OOBSize)
	var ob outbox
	handle := func(pkt []byte, from net.Addr) { s.handleData(pkt, from, &ob) }
	for {
		if err := bc.Read(buf, oob, handle); err != nil {
			if errors.Is(err, net.ErrClosed) || s.ctx.Err() != nil {
				return
			}
			continue
		}
		s.flush(bc, &ob)
	}
}

// handleData handles one data-plane packet.
func (s *Server) handleData(buf []byte, from net.Addr, ob *outbox) {
	const head = 1 + relay.TokenSize
	if len(buf) < head || from == nil {
		return
	}
	c := s.byToken(buf[1:head])
	if c == nil {
		s.m.dropped.WithLabelValues("token").Inc()
		return
	}
	switch buf[0] {
	case relay.DataBind:
		if old := c.udpAddr.Load(); old == nil || (*old).String() != from.String() {
			c.udpAddr.Store(&from)
		}
		ob.addRaw([]byte{relay.DataBound}, from)
	case relay.DataSend:
		s.m.packetsIn.Inc()
		s.m.bytesIn.Add(float64(len(buf)))
		s.tap(buf)
		pkt := buf[head:]
		if len(pkt) <= relay.PseudonymSize || len(pkt) > relay.PseudonymSize+s.lim.MaxPacket {
			s.m.dropped.WithLabelValues("size").Inc()
			return
		}
		now := time.Now()
		if !c.lim.AllowN(now, len(pkt)) || !c.cred.lim.AllowN(now, len(pkt)) {
			s.m.dropped.WithLabelValues("rate").Inc()
			return
		}
		var dst relay.PseudonymOf
		copy(dst[:], pkt)
		full := ob.buf(1 + len(pkt)) // reused after flush, once written
		copy(full[1:], pkt)
		s.forward(c, dst, full[1:], ob, full)
	}
}
