package server

import (
	"crypto/rand"
	"net"
	"time"

	"github.com/devicemesh/federation/relay"
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

// dataReaders is how many goroutines read the data socket.
const dataReaders = 2

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

// sendData delivers b (source pseudonym and packet) to addr.
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

// dataLoop reads the data socket until it closes.
func (s *Server) dataLoop() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	const head = 1 + relay.TokenSize
	for {
		n, from, err := s.data.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < head {
			continue
		}
		c := s.byToken(buf[1:head])
		if c == nil {
			s.m.dropped.WithLabelValues("token").Inc()
			continue
		}
		switch buf[0] {
		case relay.DataBind:
			if old := c.udpAddr.Load(); old == nil || (*old).String() != from.String() {
				c.udpAddr.Store(&from)
			}
			_, _ = s.data.WriteTo([]byte{relay.DataBound}, from)
		case relay.DataSend:
			s.m.packetsIn.Inc()
			s.m.bytesIn.Add(float64(n))
			s.tap(buf[:n])
			pkt := buf[head:n]
			if len(pkt) <= relay.PseudonymSize || len(pkt) > relay.PseudonymSize+s.lim.MaxPacket {
				s.m.dropped.WithLabelValues("size").Inc()
				continue
			}
			now := time.Now()
			if !c.lim.AllowN(now, len(pkt)) || !c.cred.lim.AllowN(now, len(pkt)) {
				s.m.dropped.WithLabelValues("rate").Inc()
				continue
			}
			var dst relay.PseudonymOf
			copy(dst[:], pkt)
			s.forward(c, dst, append([]byte(nil), pkt...))
		}
	}
}
