package server

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/internal/pq"
)

// carriedAddr is a TLS-over-TCP client as a QUIC peer address.
type carriedAddr string

func (a carriedAddr) Network() string { return "tcp-carried" }
func (a carriedAddr) String() string  { return string(a) }

// streamPackets is the net.PacketConn of the QUIC listener behind the TLS
// listener: it reads the packets every TLS connection carries and writes
// each packet to the connection of its address.
type streamPackets struct {
	local net.Addr
	q     *pq.Queue

	mu    sync.Mutex
	conns map[carriedAddr]*carried
}

type carried struct {
	c net.Conn
	w *relay.PacketWriter
}

func newStreamPackets(local net.Addr, n int) *streamPackets {
	return &streamPackets{local: local, q: pq.New(n), conns: map[carriedAddr]*carried{}}
}

// serve reads c's packets until it fails or ctx ends.
func (s *streamPackets) serve(ctx context.Context, c net.Conn) {
	addr := carriedAddr(c.RemoteAddr().String())
	// Dropping when full: one slow client must not hold up the relay's
	// QUIC transport, which writes to every client.
	cc := &carried{c: c, w: relay.NewPacketWriter(c, func() { _ = c.SetWriteDeadline(time.Now().Add(5 * time.Second)) }, func(error) { _ = c.Close() }, false)}
	s.mu.Lock()
	s.conns[addr] = cc
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer func() {
		s.mu.Lock()
		if s.conns[addr] == cc {
			delete(s.conns, addr)
		}
		s.mu.Unlock()
		cc.w.Close()
		_ = c.Close()
	}()
	buf := make([]byte, relay.MaxCarriedPacket)
	for {
		n, err := relay.ReadPacket(c, buf)
		if err != nil {
			return
		}
		// Waiting here when the listener is behind pushes back on the
		// client's TCP connection: memory stays bounded.
		if !s.q.Put(pq.Packet{B: append([]byte(nil), buf[:n]...), From: addr}, ctx.Done()) {
			return
		}
	}
}

func (s *streamPackets) ReadFrom(b []byte) (int, net.Addr, error) { return s.q.ReadFrom(b) }

func (s *streamPackets) WriteTo(b []byte, addr net.Addr) (int, error) {
	s.mu.Lock()
	cc := s.conns[carriedAddr(addr.String())]
	s.mu.Unlock()
	if cc == nil {
		return len(b), nil // gone: as if lost on the way
	}
	_ = cc.w.WritePacket(b) // an error: the connection is closing
	return len(b), nil
}

func (s *streamPackets) Close() error                       { return s.q.Close() }
func (s *streamPackets) LocalAddr() net.Addr                { return s.local }
func (s *streamPackets) SetDeadline(t time.Time) error      { return s.q.SetReadDeadline(t) }
func (s *streamPackets) SetReadDeadline(t time.Time) error  { return s.q.SetReadDeadline(t) }
func (s *streamPackets) SetWriteDeadline(_ time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer accept quic-go's requests: the packets
// come from TCP connections, whose buffers are the kernel's business.
func (s *streamPackets) SetReadBuffer(int) error  { return nil }
func (s *streamPackets) SetWriteBuffer(int) error { return nil }
