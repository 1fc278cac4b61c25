package federation

import "crypto/tls"

// RelayConfig attaches the node to a relay (cmd/fedrelay; see package
// relay) so that it reaches devices it has no direct path to. The session
// through the relay is the same end-to-end QUIC + Noise session as a
// direct one: the relay forwards packets it cannot read. The node keeps
// trying direct paths and moves to one when it appears. It needs the
// default QUIC transport (or a factory returning a *transport.QUIC).
type RelayConfig struct {
	// Addr is the relay: "quic://host:port" (UDP) or "tls://host:port"
	// (TLS over TCP, for networks that block UDP). "": no relay.
	Addr string
	// TLS verifies the relay's certificate. nil: any certificate (the
	// relay is trusted with nothing but forwarding).
	TLS *tls.Config
	// Mail configures relay mail for offline devices (config_relaymail.go).
	Mail RelayMailConfig
}
