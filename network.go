package federation

import (
	"context"
	"log/slog"

	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/transport"
)

// NetworkConfig says how a node reaches the user's other devices.
type NetworkConfig struct {
	// ListenAddr is the UDP address the default QUIC transport listens on.
	// Empty means ":0" (every interface, a free port).
	ListenAddr string
	// Transport, when set, builds the transport instead of QUIC, for
	// example an in-memory network in tests. It is called once by Start.
	Transport TransportFactory
	// Limits bound what peers can make the default transport spend.
	Limits transport.Limits
}

// TransportParams is what a TransportFactory gets to build a transport for
// this node.
type TransportParams struct {
	// Identity is this device's key pair.
	Identity *identity.Identity
	// Authorizer admits trusted devices and refuses the others.
	Authorizer Authorizer
	// Keys finds the registered key of a device, for one-round-trip
	// handshakes with known peers.
	Keys transport.KeyLookup
	// Logger is the node's logger.
	Logger *slog.Logger
}

// TransportFactory builds a node's transport when the node starts.
type TransportFactory func(ctx context.Context, p TransportParams) (Transport, error)

// ErrNotStarted reports a network operation on a node whose Start was not
// called.
var ErrNotStarted = peers.ErrNotStarted

// Start brings the node online: it starts the transport (QUIC by default),
// accepts sessions from trusted devices and keeps every session in sync
// until ctx ends or the node closes. It returns once the transport listens.
// Calling Start twice is an error.
func (n *Node) Start(ctx context.Context) error {
	if err := n.alive(); err != nil {
		return err
	}
	factory := n.cfg.Network.Transport
	if factory == nil {
		factory = n.quicFactory
	}
	build := func(ctx context.Context) (Transport, error) {
		return factory(ctx, TransportParams{Identity: n.c.Ident, Authorizer: n.c.Trust, Keys: n.c.Trust, Logger: n.c.Log})
	}
	n.startMail() // relay mail (config_relaymail.go)
	return n.c.Start(ctx, n.withRelay(build))
}

func (n *Node) quicFactory(ctx context.Context, p TransportParams) (Transport, error) {
	return engine.QUIC(ctx, n.cfg.Network.ListenAddr, n.cfg.Network.Limits, p.Identity, p.Authorizer, p.Keys, p.Logger)
}

// Addr returns the address peers dial to reach this node, or "" before
// Start.
func (n *Node) Addr() string { return n.c.Net.Addr() }

// Connect dials a trusted device at addr and keeps the session in sync in
// the background. peer may be zero when the device at addr is not known in
// advance; it must then still be trusted. The node remembers addr (in its
// store) and redials the device there whenever the session ends.
func (n *Node) Connect(ctx context.Context, addr string, peer DeviceID) error {
	if err := n.alive(); err != nil {
		return err
	}
	return n.c.Peers.Connect(ctx, addr, peer)
}

// PeerStatus describes one live session.
type PeerStatus struct {
	Device DeviceID
	// CaughtUp is the peer's last announcement of what it has sent us.
	CaughtUp VersionVector
	// Acked is what the peer last acknowledged holding.
	Acked                    VersionVector
	ChangesSent, ChangesRecv uint64
	BytesSent, BytesRecv     uint64
	FramesSent, FramesRecv   uint64
	Conflicts                uint64
	// Repairs counts Merkle repairs this side drove; RecordsSent and
	// RecordsRecv count the record versions they exchanged.
	Repairs, RecordsSent, RecordsRecv uint64
	// Echoes counts changes sent to the peer that originated at the peer;
	// Redundant counts changes received from it that this device already
	// held on arrival. A correct mesh keeps both at zero.
	Echoes, Redundant uint64
	// Selective counts the session's stubs, keys asked and values.
	Selective SelectiveStatus
}

// Peers lists the live sync sessions.
func (n *Node) Peers() []PeerStatus {
	members := n.c.Peers.Members()
	out := make([]PeerStatus, 0, len(members))
	for _, mb := range members {
		out = append(out, peerStatus(mb.(*engine.PeerSession)))
	}
	return out
}

func peerStatus(ps *engine.PeerSession) PeerStatus {
	st := ps.Status()
	return PeerStatus{
		Device:      st.Peer,
		CaughtUp:    st.CaughtUp,
		Acked:       st.Acked,
		ChangesSent: st.ChangesSent,
		ChangesRecv: st.ChangesRecv,
		BytesSent:   st.BytesSent,
		BytesRecv:   st.BytesRecv,
		FramesSent:  st.FramesSent,
		FramesRecv:  st.FramesRecv,
		Conflicts:   st.Conflicts,
		Repairs:     st.Repairs,
		RecordsSent: st.RecordsSent,
		RecordsRecv: st.RecordsRecv,
		Echoes:      st.Echoes,
		Redundant:   st.Redundant,
		Selective:   selectiveStatus(st),
	}
}
