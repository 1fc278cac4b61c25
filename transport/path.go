package transport

import (
	"context"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// Path is another way to reach peers than the transport's UDP socket: a
// packet conn (a relay attachment, relay.Forwarder) that names its peers
// by addresses only it resolves. Sessions over a path are the same QUIC +
// Noise sessions, authenticated the same way, as over UDP.
type Path interface {
	net.PacketConn
	// Resolve turns addr into the peer address to write packets to, and
	// reports false when addr is not one of this path's.
	Resolve(addr string) (net.Addr, bool)
}

// pathPacketSize is the QUIC packet size on a path: relays carry each
// packet in one datagram of their own connection, so packets stay small
// and path MTU discovery stays off.
const pathPacketSize = 1280

// extraPath is an added Path with its QUIC transport and listener.
type extraPath struct {
	p  Path
	tr *quic.Transport
	ln *quic.Listener
}

// AddPath makes the transport dial addresses that p resolves through p,
// and accept sessions that arrive on it. The transport closes p's QUIC
// state on Close; the caller closes p afterwards.
func (t *QUIC) AddPath(p Path) error {
	if t.ep.isClosed() {
		return fmt.Errorf("add path: %w", core.ErrClosed)
	}
	server, err := serverTLS(t.client.NextProtos[0])
	if err != nil {
		return err
	}
	qconf := t.qconf.Clone()
	qconf.InitialPacketSize = pathPacketSize
	qconf.DisablePathMTUDiscovery = true
	tr := &quic.Transport{Conn: p}
	ln, err := tr.Listen(server, qconf)
	if err != nil {
		return fmt.Errorf("add path: %w", err)
	}
	x := &extraPath{p: p, tr: tr, ln: ln}
	t.pathMu.Lock()
	t.paths = append(t.paths, x)
	t.pathConf = qconf
	t.pathMu.Unlock()
	t.loop.Add(1)
	go func() {
		defer t.loop.Done()
		t.acceptOn(ln)
	}()
	return nil
}

// pathFor returns the added path that resolves addr, if any.
func (t *QUIC) pathFor(addr string) (*extraPath, net.Addr, *quic.Config) {
	t.pathMu.Lock()
	defer t.pathMu.Unlock()
	for _, x := range t.paths {
		if a, ok := x.p.Resolve(addr); ok {
			return x, a, t.pathConf
		}
	}
	return nil, nil, nil
}

// closePaths closes the added paths' listeners and QUIC transports.
func (t *QUIC) closePaths() {
	t.pathMu.Lock()
	ps := t.paths
	t.pathMu.Unlock()
	for _, x := range ps {
		_ = x.ln.Close()
	}
}

func (t *QUIC) closePathTransports() {
	t.pathMu.Lock()
	ps := t.paths
	t.paths = nil
	t.pathMu.Unlock()
	for _, x := range ps {
		_ = x.tr.Close()
	}
}

// dialVia dials through an added path.
func (t *QUIC) dialVia(ctx context.Context, x *extraPath, ra net.Addr, qconf *quic.Config, addr string, peer core.DeviceID) (core.Session, error) {
	dctx, cancel := context.WithTimeout(ctx, t.ep.limits.HandshakeTimeout)
	defer cancel()
	plan, err := t.ep.plan(dctx, peer)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer plan.take()
	conn, err := x.tr.Dial(dctx, ra, t.client, qconf)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, mapQUICErr(err))
	}
	binding, err := exporter(conn)
	if err != nil {
		_ = conn.CloseWithError(quic.ApplicationErrorCode(wire.RejectHandshake), core.ErrHandshake.Error())
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	s, err := t.ep.dial(dctx, &quicMux{conn: conn}, binding, plan)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return s, nil
}
