// Package wire is the framed, versioned format spoken on every federation
// stream: the handshake stream that authenticates two devices and the
// application streams that follow it. It holds encoders and decoders only, no
// I/O policy: package transport decides when each message is sent.
//
// Decoders never panic on any input and never allocate more than the limit
// the caller passes (at most MaxFrameSize), nor more than a small constant
// times the bytes they were given: every count is capped by what the bytes
// left can hold, duplicates are refused, and ReadFrame grows its buffer as
// the payload arrives rather than on the header's word. Varints (unsigned
// LEB128, read by package internal/varint) must be minimal. Malformed input
// yields an error wrapping core.ErrProtocol, an oversized length
// core.ErrFrameTooLarge, and an unsupported version core.ErrVersionMismatch.
//
// # Frames
//
// Every message travels in a frame. All integers are big-endian.
//
//	offset  size  field
//	0       1     type     frame type, one of the Type constants; 0 is invalid
//	1       4     length   payload length N in bytes, N <= the reader's limit
//	                       (never above MaxFrameSize, 16 MiB)
//	5       N     payload  N bytes, meaning given by type
//
// Types 0x01-0x0F belong to this package (the handshake and stream headers
// below); 0x10-0xFF are application frames whose payload the layers above
// define (TypeAppMin and up).
//
// # Handshake stream
//
// The dialing device opens the first stream of a connection and sends, in one
// write, a Hello frame followed by the first Noise handshake message:
//
//	Hello (type 0x01), payload exactly 9 bytes:
//	0  4  magic    "DMFD"
//	4  2  min      lowest protocol version the initiator speaks (>= 1)
//	6  2  max      highest protocol version the initiator speaks (>= min)
//	8  1  pattern  Noise pattern of this handshake: 1 = XX, 2 = IK
//
//	Noise (type 0x02), payload 1..MaxNoiseMessage bytes: one Noise handshake
//	message, exactly as produced by the Noise library.
//
// The responder answers with the next Noise message, or, when it cannot go on,
// with a Reject frame:
//
//	Reject (type 0x04), payload 1..1+MaxReasonLen bytes:
//	0  1    code    RejectCode: 1 version mismatch, 2 unauthorized,
//	                3 handshake failed, 4 busy, 5 protocol violation
//	                (6, session failed, is a QUIC close code only)
//	1  0-n  reason  human-readable text, at most MaxReasonLen bytes
//
// or, when the refusal carries a notice for the refused peer (bit 0x80 of
// the code byte set; see core.NoticeError):
//
//	0  1    code    RejectCode | 0x80
//	1  1    n       length of the reason, at most MaxReasonLen
//	2  n    reason  human-readable text
//	2+n 1-m notice  the notice, 1 to MaxNoticeLen bytes (a revoked device
//	                gets the signed registry operation that revoked it)
//
// Inside the Noise messages that carry a static key, the encrypted Noise
// payload is a Payload:
//
//	Payload, exactly 34 bytes:
//	0  2   version  the protocol version the responder selected from the
//	                Hello range; 0 in the initiator's payload
//	2  32  key      the sender's Ed25519 public key (core.PublicKey)
//
// Whichever side learns the other's identity last (the responder for XX, the
// initiator for IK) ends the handshake with an Accept frame or a Reject frame:
//
//	Accept (type 0x03), payload empty.
//
// # Application streams
//
// Every later stream starts with a StreamOpen frame from the side that opened
// it, then carries application bytes:
//
//	StreamOpen (type 0x05), payload exactly 2 bytes:
//	0  2  version  the protocol version selected in the handshake
package wire
