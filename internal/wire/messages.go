package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
)

// ALPN is the TLS application protocol every federation QUIC connection
// negotiates. Its trailing number is the wire generation: it changes only
// when the frame layout itself changes, while Hello negotiates protocol
// versions within a generation.
const ALPN = "devicemesh-fed/1"

// Protocol versions this build speaks.
const (
	VersionMin uint16 = 1
	VersionMax uint16 = 1
)

// Sizes of fixed messages.
const (
	helloSize       = 9
	payloadSize     = 34
	streamOpenSize  = 2
	MaxReasonLen    = 200  // longest reason text a Reject carries
	MaxNoticeLen    = 1024 // longest notice a Reject carries
	MaxNoiseMessage = 1000 // longest Noise handshake message accepted
)

var helloMagic = [4]byte{'D', 'M', 'F', 'D'}

// Pattern is the Noise handshake pattern announced in a Hello.
type Pattern uint8

// Noise patterns.
const (
	PatternXX Pattern = 1 // first contact: both static keys travel encrypted
	PatternIK Pattern = 2 // known responder: the initiator already holds its key
)

// String names the pattern.
func (p Pattern) String() string {
	switch p {
	case PatternXX:
		return "XX"
	case PatternIK:
		return "IK"
	}
	return fmt.Sprintf("pattern(%d)", uint8(p))
}

// Hello is the initiator's opening message.
type Hello struct {
	Min, Max uint16
	Pattern  Pattern
}

// Encode returns the Hello payload.
func (h Hello) Encode() []byte {
	b := make([]byte, 0, helloSize)
	b = append(b, helloMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, h.Min)
	b = binary.BigEndian.AppendUint16(b, h.Max)
	return append(b, byte(h.Pattern))
}

// DecodeHello parses a Hello payload.
func DecodeHello(b []byte) (Hello, error) {
	if len(b) != helloSize {
		return Hello{}, fmt.Errorf("%w: hello of %d bytes", core.ErrProtocol, len(b))
	}
	if [4]byte(b[:4]) != helloMagic {
		return Hello{}, fmt.Errorf("%w: hello magic", core.ErrProtocol)
	}
	h := Hello{
		Min:     binary.BigEndian.Uint16(b[4:6]),
		Max:     binary.BigEndian.Uint16(b[6:8]),
		Pattern: Pattern(b[8]),
	}
	if h.Min == 0 || h.Min > h.Max {
		return Hello{}, fmt.Errorf("%w: hello version range %d-%d", core.ErrProtocol, h.Min, h.Max)
	}
	if h.Pattern != PatternXX && h.Pattern != PatternIK {
		return Hello{}, fmt.Errorf("%w: hello %v", core.ErrProtocol, h.Pattern)
	}
	return h, nil
}

// Select returns the highest version in both [h.Min, h.Max] and [lo, hi], or
// an error wrapping core.ErrVersionMismatch when the ranges do not meet.
func (h Hello) Select(lo, hi uint16) (uint16, error) {
	v := min(h.Max, hi)
	if v < max(h.Min, lo) {
		return 0, fmt.Errorf("%w: peer speaks %d-%d, we speak %d-%d", core.ErrVersionMismatch, h.Min, h.Max, lo, hi)
	}
	return v, nil
}

// Payload is the identity proof carried encrypted inside Noise messages.
type Payload struct {
	Version uint16 // selected version (responder), 0 (initiator)
	Key     core.PublicKey
}

// Encode returns the payload bytes.
func (p Payload) Encode() []byte {
	b := make([]byte, 0, payloadSize)
	b = binary.BigEndian.AppendUint16(b, p.Version)
	return append(b, p.Key[:]...)
}

// DecodePayload parses a handshake payload.
func DecodePayload(b []byte) (Payload, error) {
	if len(b) != payloadSize {
		return Payload{}, fmt.Errorf("%w: handshake payload of %d bytes", core.ErrProtocol, len(b))
	}
	p := Payload{Version: binary.BigEndian.Uint16(b[:2])}
	copy(p.Key[:], b[2:])
	return p, nil
}

// RejectCode says why a peer was refused.
type RejectCode uint8

// Reject codes.
const (
	RejectVersion      RejectCode = 1
	RejectUnauthorized RejectCode = 2
	RejectHandshake    RejectCode = 3
	RejectBusy         RejectCode = 4
	RejectProtocol     RejectCode = 5
	// RejectSession closes a session that failed after its handshake for
	// a reason with no code of its own. It is a QUIC close code only,
	// never sent in a Reject frame.
	RejectSession RejectCode = 6
)

// String names the code.
func (c RejectCode) String() string {
	switch c {
	case RejectVersion:
		return "version mismatch"
	case RejectUnauthorized:
		return "unauthorized"
	case RejectHandshake:
		return "handshake failed"
	case RejectBusy:
		return "busy"
	case RejectProtocol:
		return "protocol violation"
	case RejectSession:
		return "session failed"
	}
	return fmt.Sprintf("reject(%d)", uint8(c))
}

// Reject is a refusal with its reason.
type Reject struct {
	Code   RejectCode
	Reason string
	// Notice is an optional self-authenticating message for the refused
	// peer (see core.NoticeError), at most MaxNoticeLen bytes.
	Notice []byte
}

// noticeFlag marks, in the code byte, a Reject that carries a notice.
const noticeFlag = 0x80

// Encode returns the Reject payload; an over-long reason is truncated, an
// over-long notice dropped.
func (r Reject) Encode() []byte {
	reason := r.Reason
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	if len(r.Notice) == 0 || len(r.Notice) > MaxNoticeLen {
		return append([]byte{byte(r.Code)}, reason...)
	}
	b := make([]byte, 0, 2+len(reason)+len(r.Notice))
	b = append(b, byte(r.Code)|noticeFlag, byte(len(reason)))
	b = append(b, reason...)
	return append(b, r.Notice...)
}

// DecodeReject parses a Reject payload.
func DecodeReject(b []byte) (Reject, error) {
	if len(b) < 1 || len(b) > 2+MaxReasonLen+MaxNoticeLen {
		return Reject{}, fmt.Errorf("%w: reject of %d bytes", core.ErrProtocol, len(b))
	}
	c := RejectCode(b[0] &^ noticeFlag)
	if c < RejectVersion || c > RejectProtocol {
		return Reject{}, fmt.Errorf("%w: reject code %d", core.ErrProtocol, b[0])
	}
	if b[0]&noticeFlag == 0 {
		if len(b) > 1+MaxReasonLen {
			return Reject{}, fmt.Errorf("%w: reject of %d bytes", core.ErrProtocol, len(b))
		}
		return Reject{Code: c, Reason: string(b[1:])}, nil
	}
	if len(b) < 2 || int(b[1]) > MaxReasonLen || len(b) < 2+int(b[1])+1 {
		return Reject{}, fmt.Errorf("%w: reject with a notice of %d bytes", core.ErrProtocol, len(b))
	}
	n := 2 + int(b[1])
	return Reject{Code: c, Reason: string(b[2:n]), Notice: slices.Clone(b[n:])}, nil
}

// Sentinel returns the core error matching the code.
func (c RejectCode) Sentinel() error {
	switch c {
	case RejectVersion:
		return core.ErrVersionMismatch
	case RejectUnauthorized:
		return core.ErrUnauthorized
	case RejectBusy:
		return ErrBusy
	case RejectProtocol:
		return core.ErrProtocol
	case RejectSession:
		return core.ErrClosed
	}
	return core.ErrHandshake
}

// CodeFor maps an error to the reject code that tells the peer about it.
func CodeFor(err error) RejectCode {
	switch {
	case errors.Is(err, core.ErrVersionMismatch):
		return RejectVersion
	case errors.Is(err, core.ErrUnauthorized):
		return RejectUnauthorized
	case errors.Is(err, ErrBusy):
		return RejectBusy
	case errors.Is(err, core.ErrProtocol), errors.Is(err, core.ErrFrameTooLarge):
		return RejectProtocol
	}
	return RejectHandshake
}

// Err returns the refusal as an error wrapping the code's sentinel.
func (r Reject) Err() error {
	return &RejectError{Reject: r}
}

// RejectError is a refusal received from the peer.
type RejectError struct{ Reject Reject }

// Error describes the refusal.
func (e *RejectError) Error() string {
	if e.Reject.Code == RejectSession {
		return "peer closed the session: " + e.Reject.Code.String()
	}
	if e.Reject.Reason == "" {
		return "peer refused: " + e.Reject.Code.String()
	}
	return "peer refused: " + e.Reject.Code.String() + ": " + e.Reject.Reason
}

// Unwrap returns the sentinel matching the reject code.
func (e *RejectError) Unwrap() error { return e.Reject.Code.Sentinel() }

// EncodeStreamOpen returns a StreamOpen payload.
func EncodeStreamOpen(version uint16) []byte {
	return binary.BigEndian.AppendUint16(make([]byte, 0, streamOpenSize), version)
}

// DecodeStreamOpen parses a StreamOpen payload and checks it names want.
func DecodeStreamOpen(b []byte, want uint16) error {
	if len(b) != streamOpenSize {
		return fmt.Errorf("%w: stream header of %d bytes", core.ErrProtocol, len(b))
	}
	if v := binary.BigEndian.Uint16(b); v != want {
		return fmt.Errorf("%w: stream version %d, session version %d", core.ErrProtocol, v, want)
	}
	return nil
}
