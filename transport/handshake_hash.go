package transport

import (
	"bytes"

	"github.com/flynn/noise"
)

// HandshakeHash returns the Noise handshake hash of the session (the
// channel binding h after the last handshake message, 32 bytes for
// SHA-256). It is identical on both ends of one session and, since the
// handshake is bound to the TLS exporter (or Mem's per-connection value) and
// mixes in both sides' ephemeral and static keys, different on any other
// session, including the two halves a man in the middle would splice
// together. Layers above use it to bind a secret or a short authentication
// string to this very session (see package pairing). The caller owns the
// returned slice.
func (s *Session) HandshakeHash() []byte { return bytes.Clone(s.hash) }

// channelBinding copies the handshake hash out of a completed handshake.
func channelBinding(hs *noise.HandshakeState) []byte {
	return bytes.Clone(hs.ChannelBinding())
}
