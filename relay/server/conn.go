package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/devicemesh/federation/relay"
)

// client is one authenticated connection.
type client struct {
	s    *Server
	conn *quic.Conn
	info ClientInfo
	cred *credState
	lim  *rate.Limiter
	out  chan []byte // packets waiting to be sent to the client

	// The client's data-plane address (UDP, see data.go), once it bound
	// its token; nil: packets go as datagrams on conn.
	udpAddr atomic.Pointer[net.Addr]

	// Under Server.mu.
	pseud    relay.PseudonymOf
	hasPseud bool
	sub      *nats.Subscription
	token    [relay.TokenSize]byte
	hasToken bool
}

// credState is what the connections of one credential share.
type credState struct {
	conns int
	lim   *rate.Limiter
}

// routeKey is a registered pseudonym within its credential.
type routeKey struct {
	cred  relay.CredentialID
	pseud relay.PseudonymOf
}

// subject is the NATS subject of a pseudonym's packets.
func subject(k routeKey) string {
	return "fedrelay.fwd." + string(k.cred) + "." + k.pseud.String()
}

// serveConn authenticates conn, then serves its streams and datagrams
// until it closes.
func (s *Server) serveConn(conn *quic.Conn) {
	ctx := conn.Context()
	c, err := s.authenticate(ctx, conn)
	if err != nil {
		s.m.authFail.Inc()
		s.log.Info("client refused", "remote", conn.RemoteAddr().String(), "err", err)
		code := relay.StatusUnauthorized
		if errors.Is(err, relay.ErrBusy) {
			code = relay.StatusBusy
		}
		_ = conn.CloseWithError(quic.ApplicationErrorCode(code), "refused")
		return
	}
	defer s.drop(c)
	s.log.Debug("client connected", "remote", c.info.Remote.String(), "credential", c.info.Credential, "conn", c.info.Conn)
	go c.sendLoop(ctx)
	go c.datagramLoop(ctx)
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go c.serveStream(ctx, st)
	}
}

// authenticate reads the auth stream: kind, proof; and admits the
// connection under the limits.
func (s *Server) authenticate(ctx context.Context, conn *quic.Conn) (*client, error) {
	actx, cancel := context.WithTimeout(ctx, s.lim.AuthTimeout)
	defer cancel()
	st, err := conn.AcceptStream(actx)
	if err != nil {
		return nil, fmt.Errorf("auth stream: %w", err)
	}
	stop := context.AfterFunc(actx, func() { st.CancelRead(0) })
	defer stop()
	defer st.Close()
	var kind [1]byte
	if _, err := io.ReadFull(st, kind[:]); err != nil || kind[0] != relay.KindAuth {
		return nil, fmt.Errorf("first stream is not auth: %v", err)
	}
	b, err := relay.ReadFrame(st, 256)
	if err != nil {
		return nil, fmt.Errorf("auth hello: %w", err)
	}
	h, err := relay.ParseAuthHello(b)
	if err != nil {
		return nil, err
	}
	cs := conn.ConnectionState().TLS
	binding, err := cs.ExportKeyingMaterial(relay.ExporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	reply := func(status byte, reason string) {
		_, _ = st.Write([]byte{status})
		_ = relay.WriteFrame(st, []byte(reason))
	}
	if !h.Verify(binding) {
		reply(relay.StatusUnauthorized, "bad proof")
		return nil, relay.ErrUnauthorized
	}
	id := relay.IDOf(h.Public)
	if s.cfg.Allow != nil && !s.cfg.Allow(id) {
		reply(relay.StatusUnauthorized, "credential not admitted")
		return nil, fmt.Errorf("%w: %s", relay.ErrUnauthorized, id)
	}
	c := &client{
		s: s, conn: conn,
		info: ClientInfo{Credential: id, Remote: conn.RemoteAddr(), Conn: s.connNo.Add(1)},
		lim:  rate.NewLimiter(rate.Limit(s.lim.ConnRate), s.lim.ConnBurst),
		out:  make(chan []byte, s.lim.QueuePackets),
	}
	s.mu.Lock()
	cred := s.perCred[id]
	switch {
	case len(s.conns) >= s.lim.MaxConns:
		s.mu.Unlock()
		reply(relay.StatusBusy, "relay full")
		return nil, relay.ErrBusy
	case cred != nil && cred.conns >= s.lim.MaxConnsPerCredential:
		s.mu.Unlock()
		reply(relay.StatusBusy, "too many connections for this credential")
		return nil, relay.ErrBusy
	}
	if cred == nil {
		cred = &credState{lim: rate.NewLimiter(rate.Limit(s.lim.CredentialRate), s.lim.CredentialBurst)}
		s.perCred[id] = cred
	}
	cred.conns++
	c.cred = cred
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.m.conns.Inc()
	reply(relay.StatusOK, "")
	return c, nil
}

// drop forgets a closed connection and its route.
func (s *Server) drop(c *client) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.cred.conns--; c.cred.conns <= 0 {
		delete(s.perCred, c.info.Credential)
	}
	sub := s.unrouteLocked(c)
	s.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	s.m.conns.Dec()
	s.log.Debug("client gone", "conn", c.info.Conn)
}

func (s *Server) unrouteLocked(c *client) *nats.Subscription {
	if !c.hasPseud {
		return nil
	}
	k := routeKey{c.info.Credential, c.pseud}
	if s.routes[k] == c {
		delete(s.routes, k)
	}
	c.hasPseud = false
	if c.hasToken {
		delete(s.tokens, c.token)
		c.hasToken = false
	}
	sub := c.sub
	c.sub = nil
	return sub
}

// serveStream reads the kind byte and hands the stream on.
func (c *client) serveStream(ctx context.Context, st *quic.Stream) {
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); _ = st.Close() })
	defer stop()
	var kind [1]byte
	if _, err := io.ReadFull(st, kind[:]); err != nil {
		st.CancelRead(0)
		_ = st.Close()
		return
	}
	c.s.m.streams.WithLabelValues(string(kind[:])).Inc()
	rw := &stream{s: st, tap: c.s.tap}
	if kind[0] == relay.KindForward {
		err := c.serveForward(ctx, rw)
		if err != nil && ctx.Err() == nil {
			c.s.log.Debug("forward stream ended", "conn", c.info.Conn, "err", err)
		}
		return
	}
	h := c.s.cfg.Handlers[kind[0]]
	if h == nil {
		_ = rw.Close()
		return
	}
	if err := h.ServeStream(ctx, c.info, rw); err != nil && ctx.Err() == nil {
		c.s.log.Debug("stream ended", "kind", string(kind[:]), "conn", c.info.Conn, "err", err)
	}
}

// stream adapts a QUIC stream to io.ReadWriteCloser; Close ends both
// directions, CloseWrite (for handlers that assert it) only the relay's.
type stream struct {
	s   *quic.Stream
	tap func([]byte)
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.s.Read(p)
	s.tap(p[:n])
	return n, err
}

func (s *stream) Write(p []byte) (int, error) { return s.s.Write(p) }
func (s *stream) CloseWrite() error           { return s.s.Close() }
func (s *stream) Close() error {
	s.s.CancelRead(0)
	return s.s.Close()
}

// serveForward registers the pseudonym the client receives packets for,
// for as long as the stream stays open.
func (c *client) serveForward(ctx context.Context, st io.ReadWriteCloser) error {
	defer st.Close()
	b, err := relay.ReadFrame(st, 64)
	if err != nil {
		return err
	}
	if len(b) != relay.PseudonymSize {
		_, _ = st.Write([]byte{relay.StatusBadRequest})
		return errors.New("bad registration")
	}
	var p relay.PseudonymOf
	copy(p[:], b)
	if err := c.s.register(c, p); err != nil {
		_, _ = st.Write([]byte{relay.StatusBusy})
		return err
	}
	tok, port := c.s.issueToken(c)
	reply := append([]byte{relay.StatusOK}, tok[:]...)
	reply = binary.BigEndian.AppendUint16(reply, port)
	if _, err := st.Write(reply); err != nil {
		return err
	}
	// The registration lasts until the client closes the stream or the
	// connection ends.
	_, _ = io.Copy(io.Discard, io.LimitReader(st, 1<<10))
	c.s.mu.Lock()
	sub := c.s.unrouteLocked(c)
	c.s.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	return nil
}

// register routes p's packets to c: locally, and through NATS from the
// other instances.
func (s *Server) register(c *client, p relay.PseudonymOf) error {
	k := routeKey{c.info.Credential, p}
	s.mu.Lock()
	old := s.unrouteLocked(c)
	s.routes[k] = c
	c.pseud, c.hasPseud = p, true
	s.mu.Unlock()
	if old != nil {
		_ = old.Unsubscribe()
	}
	if s.cfg.NATS == nil {
		return nil
	}
	sub, err := s.cfg.NATS.Subscribe(subject(k), func(m *nats.Msg) {
		s.m.fromNATS.Inc()
		s.tap(m.Data)
		c.enqueue(m.Data, nil, nil)
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	// A slow client drops packets here rather than growing a queue.
	_ = sub.SetPendingLimits(s.lim.QueuePackets, s.lim.QueuePackets*(s.lim.MaxPacket+relay.PseudonymSize))
	s.mu.Lock()
	if c.hasPseud && c.pseud == p && c.sub == nil {
		c.sub = sub
		sub = nil
	}
	s.mu.Unlock()
	if sub != nil { // unregistered meanwhile
		_ = sub.Unsubscribe()
	}
	return nil
}

// enqueue queues a packet for the client, or drops it when its queue is
// full.
func (c *client) enqueue(b []byte, ob *outbox, full []byte) {
	if a := c.udpAddr.Load(); a != nil && c.s.data != nil {
		switch {
		case ob != nil && full != nil:
			full[0] = relay.DataDeliver
			ob.addRaw(full, *a)
			return
		case ob != nil:
			ob.add(b, *a)
			return
		}
		c.s.sendData(b, *a)
		return
	}
	select {
	case c.out <- b:
	default:
		c.s.m.dropped.WithLabelValues("queue").Inc()
	}
}

// sendLoop sends the queued packets as datagrams.
func (c *client) sendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-c.out:
			if err := c.conn.SendDatagram(b); err != nil {
				var tl *quic.DatagramTooLargeError
				if errors.As(err, &tl) {
					c.s.m.dropped.WithLabelValues("size").Inc()
					continue
				}
				return
			}
			c.s.m.packetsOut.Inc()
			c.s.m.bytesOut.Add(float64(len(b)))
		}
	}
}

// datagramLoop forwards the client's packets.
func (c *client) datagramLoop(ctx context.Context) {
	s := c.s
	for {
		b, err := c.conn.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		s.m.packetsIn.Inc()
		s.m.bytesIn.Add(float64(len(b)))
		s.tap(b)
		if len(b) <= relay.PseudonymSize || len(b) > relay.PseudonymSize+s.lim.MaxPacket {
			s.m.dropped.WithLabelValues("size").Inc()
			continue
		}
		now := time.Now()
		if !c.lim.AllowN(now, len(b)) || !c.cred.lim.AllowN(now, len(b)) {
			s.m.dropped.WithLabelValues("rate").Inc()
			continue
		}
		var dst relay.PseudonymOf
		copy(dst[:], b)
		s.forward(c, dst, b, nil, nil) // b's first bytes become the source pseudonym
	}
}

// forward routes b, PseudonymSize bytes of room and the packet, from c to
// the client that registered dst: locally, else through NATS. It writes
// c's pseudonym in b's first bytes.
// Data-plane packets for clients bound there go to ob when set (the
// caller writes them in a batch); full, when set, is b with one byte of
// room before it for the data-plane header, saving a copy.
func (s *Server) forward(c *client, dst relay.PseudonymOf, b []byte, ob *outbox, full []byte) {
	s.mu.Lock()
	src, ok := c.pseud, c.hasPseud
	to := s.routes[routeKey{c.info.Credential, dst}]
	s.mu.Unlock()
	if !ok {
		s.m.dropped.WithLabelValues("unregistered").Inc()
		return
	}
	copy(b, src[:]) // the receiver learns the sender's pseudonym
	switch {
	case to != nil:
		s.m.fwdLocal.Inc()
		to.enqueue(b, ob, full)
	case s.cfg.NATS != nil:
		if err := s.cfg.NATS.Publish(subject(routeKey{c.info.Credential, dst}), b); err != nil {
			s.m.dropped.WithLabelValues("nats").Inc()
			return
		}
		s.m.fwdNATS.Inc()
	default:
		s.m.dropped.WithLabelValues("no_route").Inc()
	}
}
