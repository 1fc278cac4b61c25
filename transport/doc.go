// Package transport carries authenticated sessions between a user's
// devices: QUIC for real networks and Mem, an in-process twin with the same
// handshake and authentication, for tests.
//
// # Connection, then proof of identity
//
// One QUIC connection per peer carries many streams. TLS 1.3 runs with
// ephemeral self-signed certificates, which prove nothing on their own; the
// ALPN value (wire.ALPN) names the wire generation, so a peer of another
// generation fails the TLS handshake and Dial reports
// core.ErrVersionMismatch.
//
// On the first stream the devices run a Noise handshake (flynn/noise,
// 25519/ChaChaPoly/SHA-256) with their static X25519 keys, derived from
// their Ed25519 device keys (identity.NoisePublicFor):
//
//   - XX for first contact (Dial with a zero DeviceID, or a peer whose key
//     the KeyLookup does not know): 1.5 round trips, then the responder's
//     verdict.
//   - IK for a known peer: the initiator encrypts to the responder's
//     registered key, so a device that is not that peer cannot even read
//     the first message. One round trip, then the initiator's verdict.
//     The first message already proves the initiator's key (bound to the
//     TLS session, so it cannot be replayed), so the responder admits it
//     there and starts its session as soon as its reply is sent: its first
//     application bytes follow the reply in the same flight, and the
//     verdict is read afterwards (a refusal, or none within the handshake
//     timeout, ends that session). The initiator sends no application
//     byte before it has checked the reply and authorized the responder.
//
// (In XX the responder shows its key to whoever connects, as XX does; IK
// shows nothing to a device that does not already hold it.)
//
// The Noise prologue holds a TLS exporter value of the QUIC connection
// (label exporterLabel) and the initiator's version offer, so the
// handshake is bound to this very TLS session: a relay or man in the
// middle that terminates TLS on both sides holds two different exporter
// values and cannot splice the halves, and recorded handshake messages
// replayed on a new connection fail to decrypt. The Mem transport uses a
// random per-connection value in the exporter's place.
//
// Each side's encrypted Noise payload carries its Ed25519 public key; the
// receiver checks that the key maps to the static key the peer just proved
// (so the peer learns our DeviceID and cannot borrow another), then calls
// the core.Authorizer. Whichever side learned the other's identity last sends
// the verdict (an Accept or a Reject frame). A refused device never gets a
// session from the device that refused it: the acceptor never hands a
// refused initiator to Accept (an IK responder refused by the initiator
// holds a session only until the verdict arrives, and receives nothing on
// it), the dialer's Dial fails
// with an error wrapping core.ErrUnauthorized, and the connection is closed
// with the reject code before any application stream is read or written.
// The Authorizer also enforces revocation: a revoked device is refused like
// an unknown one. (Two Ed25519 keys, P and -P, map to one X25519 key; only
// the holder of that private key can use either, so this grants nothing.)
//
// After the handshake, application streams rely on QUIC's own TLS
// encryption, which the Noise handshake has authenticated through the
// exporter binding; no second layer of encryption runs per byte, which is
// what keeps goodput close to raw QUIC.
//
// # Streams and frames
//
// Session.OpenStream sends a StreamOpen header naming the negotiated
// version; Session.AcceptStream checks it, and a malformed header closes
// that session (only that one) with core.ErrProtocol. Layers above exchange
// application frames with Session.ReadFrame and WriteFrame: a malformed or
// oversized frame closes the session it came on, with an error wrapping
// core.ErrProtocol or core.ErrFrameTooLarge, and the peer's Session.Err
// reports the reject code it was sent. Session.Close(reason) closes the QUIC
// connection with the reject code of reason's sentinel (0 for nil or
// core.ErrClosed); a reason without one after the handshake is sent as
// RejectSession (6, "session failed", core.ErrClosed at the peer), never
// as a failed handshake. The byte layout of every frame is in package
// internal/wire.
//
// # Limits
//
// Limits bounds what a hostile peer can make a transport spend: the
// handshake timeout (QUIC and Noise together), the number of concurrent
// streams a peer may open (QUIC flow control), the frame size, the live
// sessions per device, the unauthenticated connections in total and per
// IP address, and the idle timeout with keep-alives. A connection over the
// unauthenticated caps is not refused: it takes the place of the oldest
// pending connection of its own address, or of the address holding the
// most, so silent connections from a few addresses cannot lock other
// devices out; a handshake leaves that pool as soon as its peer has proven
// a key the Authorizer admits (for IK, at the first message). HelloTimeout
// and FrameTimeout are enforced by the sync protocol above (a session with
// no stream or no hello, or stalled mid-frame, is cut off).
//
// # Concurrency
//
// Every goroutine a transport starts (the accept loop, one per handshake in
// progress) ends when Close returns. Sessions and transports are safe for
// concurrent use; a stream is safe for one reader and one writer at a time.
package transport
