package transport

import (
	"time"

	"github.com/devicemesh/federation/internal/wire"
)

// Limits bound what a peer, hostile or not, can make a transport spend. Every
// zero field takes the default given in its comment.
type Limits struct {
	// HandshakeTimeout bounds the handshakes: a dial, from the first packet
	// to the verdict; on the accepting side, the QUIC handshake (quic-go
	// allows it up to twice this) and then the Noise handshake, each. A peer
	// that stalls is cut off. 0: 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a session with no traffic at all for this long.
	// 0: 30s.
	IdleTimeout time.Duration
	// KeepAlive is how often an idle session sends a keep-alive packet so
	// that IdleTimeout only ends dead paths. 0: 10s; negative: never.
	KeepAlive time.Duration
	// MaxIncomingStreams caps the streams a peer may have open towards us at
	// once (QUIC flow control enforces it). 0: 100.
	MaxIncomingStreams int
	// MaxFrameSize caps an application frame read by Session.ReadFrame.
	// 0: 1 MiB; never above 16 MiB.
	MaxFrameSize int
	// MaxSessionsPerPeer caps the live sessions with one device. One is the
	// steady state; the default of 2 lets two devices that dial each other at
	// the same moment both succeed so the node can keep one. A device that
	// authenticates once more at the cap replaces its oldest session (which
	// is closed), so a device restarted after a crash is never locked out
	// by the sessions it left behind; it is refused as busy only while
	// handshakes of its own hold every slot. 0: 2.
	MaxSessionsPerPeer int
	// MaxPendingHandshakes caps inbound connections whose peer has not yet
	// proven a key the Authorizer admits. A newcomer over the cap is not
	// refused: the oldest pending connection of the address holding the
	// most is closed (ErrBusy at its peer) to make room, so silent
	// connections cannot lock other devices out. 0: 64.
	MaxPendingHandshakes int
	// MaxPendingPerHost caps the unauthenticated inbound connections from
	// one IP address; a newcomer over it takes the place of that address's
	// oldest. 0: 8.
	MaxPendingPerHost int
	// HelloTimeout bounds, for the sync protocol a node runs over each
	// session (package federation, on any transport), the time from the
	// session's start to the peer's whole SyncHello: a peer that opens no
	// stream, or never finishes its hello, is cut off. 0: 10s.
	HelloTimeout time.Duration
	// FrameTimeout bounds, for the sync protocol, the time the rest of a
	// frame may take once its first byte has arrived: a peer that stops
	// mid-frame is cut off. It must leave room for the largest frame
	// (about 4 MiB) on the slowest path. 0: 60s.
	FrameTimeout time.Duration
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.HandshakeTimeout, 5*time.Second)
	def(&l.IdleTimeout, 30*time.Second)
	def(&l.KeepAlive, 10*time.Second)
	def(&l.HelloTimeout, 10*time.Second)
	def(&l.FrameTimeout, 60*time.Second)
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&l.MaxIncomingStreams, 100)
	defInt(&l.MaxFrameSize, wire.DefaultMaxFrameSize)
	l.MaxFrameSize = min(l.MaxFrameSize, wire.MaxFrameSize)
	defInt(&l.MaxSessionsPerPeer, 2)
	defInt(&l.MaxPendingHandshakes, 64)
	defInt(&l.MaxPendingPerHost, 8)
	return l
}
