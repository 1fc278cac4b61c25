package wire

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/devicemesh/federation/core"
)

// Type is a frame type byte.
type Type uint8

// Frame types. 0 is never valid; 0x10 and above belong to the application.
const (
	TypeHello      Type = 0x01 // initiator's version offer, first frame of a connection
	TypeNoise      Type = 0x02 // one Noise handshake message
	TypeAccept     Type = 0x03 // handshake verdict: the peer is authorized
	TypeReject     Type = 0x04 // handshake verdict or early refusal, with a code
	TypeStreamOpen Type = 0x05 // header of every application stream
	TypeAppMin     Type = 0x10 // first type available to application protocols
)

// String names the type.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeNoise:
		return "noise"
	case TypeAccept:
		return "accept"
	case TypeReject:
		return "reject"
	case TypeStreamOpen:
		return "stream-open"
	}
	if t >= TypeAppMin {
		return fmt.Sprintf("app(0x%02x)", uint8(t))
	}
	return fmt.Sprintf("invalid(0x%02x)", uint8(t))
}

// valid reports whether t may appear on the wire.
func (t Type) valid() bool { return t >= TypeAppMin || (t >= TypeHello && t <= TypeStreamOpen) }

const (
	// HeaderSize is the size of a frame header: type and length.
	HeaderSize = 5
	// MaxFrameSize is the hard ceiling on any frame payload, whatever limit
	// a caller asks for.
	MaxFrameSize = 16 << 20
	// DefaultMaxFrameSize is the payload limit used when a caller passes 0.
	DefaultMaxFrameSize = 1 << 20
	// MaxHandshakeFrame bounds every frame on the handshake stream.
	MaxHandshakeFrame = 1024
)

// Frame is one decoded frame. Payload aliases the buffer passed to ReadFrame.
type Frame struct {
	Type    Type
	Payload []byte
}

// AppendFrame appends the encoding of a frame to dst. It returns an error
// wrapping core.ErrFrameTooLarge when payload exceeds MaxFrameSize and
// core.ErrProtocol for an invalid type.
func AppendFrame(dst []byte, t Type, payload []byte) ([]byte, error) {
	if !t.valid() {
		return dst, fmt.Errorf("%w: frame type %v", core.ErrProtocol, t)
	}
	if len(payload) > MaxFrameSize {
		return dst, fmt.Errorf("%w: payload of %d bytes", core.ErrFrameTooLarge, len(payload))
	}
	dst = append(dst, byte(t))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...), nil
}

// StartFrame appends the header of a frame of type t to dst, with its
// length left open: the caller appends the payload straight after it and
// seals the frame with FinishFrame. A large payload is then encoded once,
// in place, instead of being copied into a frame.
func StartFrame(dst []byte, t Type) []byte {
	return append(dst, byte(t), 0, 0, 0, 0)
}

// FinishFrame sets the length in the header that starts frame (as
// StartFrame wrote it) to the bytes that follow it. It fails like
// AppendFrame for an invalid type or a payload over MaxFrameSize.
func FinishFrame(frame []byte) error {
	if len(frame) < HeaderSize {
		return fmt.Errorf("%w: frame shorter than its header", core.ErrProtocol)
	}
	if t := Type(frame[0]); !t.valid() {
		return fmt.Errorf("%w: frame type %v", core.ErrProtocol, t)
	}
	n := len(frame) - HeaderSize
	if n > MaxFrameSize {
		return fmt.Errorf("%w: payload of %d bytes", core.ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(frame[1:HeaderSize], uint32(n))
	return nil
}

// WriteFrame writes one frame to w in a single Write call.
func WriteFrame(w io.Writer, t Type, payload []byte) error {
	b, err := AppendFrame(make([]byte, 0, HeaderSize+len(payload)), t, payload)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %v frame: %w", t, err)
	}
	return nil
}

// DecodeHeader decodes a frame header and checks its length against limit
// (0: DefaultMaxFrameSize; capped at MaxFrameSize).
func DecodeHeader(h []byte, limit int) (Type, int, error) {
	if len(h) < HeaderSize {
		return 0, 0, fmt.Errorf("%w: short frame header", core.ErrProtocol)
	}
	t := Type(h[0])
	if !t.valid() {
		return 0, 0, fmt.Errorf("%w: frame type %v", core.ErrProtocol, t)
	}
	n := binary.BigEndian.Uint32(h[1:HeaderSize])
	if uint64(n) > uint64(effectiveLimit(limit)) {
		return 0, 0, fmt.Errorf("%w: %v frame of %d bytes, limit %d", core.ErrFrameTooLarge, t, n, effectiveLimit(limit))
	}
	return t, int(n), nil
}

func effectiveLimit(limit int) int {
	if limit <= 0 {
		return DefaultMaxFrameSize
	}
	return min(limit, MaxFrameSize)
}

// readChunk is the most ReadFrame allocates ahead of the bytes it has
// received: a header claiming a large payload buys no memory until the
// payload arrives.
const readChunk = 64 << 10

// ReadFrame reads one frame from r. The payload is read into buf when it is
// large enough, otherwise into buf and then slices that grow (by doubling,
// from buf's capacity or 64 KiB) as the payload arrives, so at most limit
// bytes (limit as for DecodeHeader), and at most twice the bytes received
// plus 64 KiB, are ever allocated. A stream that ends inside a frame yields an error
// wrapping io.ErrUnexpectedEOF and core.ErrProtocol; one that ends before
// a frame yields io.EOF.
func ReadFrame(r io.Reader, buf []byte, limit int) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("%w: %w", core.ErrProtocol, err)
		}
		return Frame{}, err
	}
	t, n, err := DecodeHeader(h[:], limit)
	if err != nil {
		return Frame{}, err
	}
	if cap(buf) >= n {
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return Frame{}, cutShort(t, err)
		}
		return Frame{Type: t, Payload: buf}, nil
	}
	// Grow as the payload arrives, starting from the caller's buffer (memory
	// an earlier frame already paid for) or one chunk: a header alone buys
	// nothing.
	if start := min(n, readChunk); cap(buf) >= start {
		buf = buf[:0]
	} else {
		buf = make([]byte, 0, start)
	}
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		m, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return Frame{}, cutShort(t, err)
		}
	}
	return Frame{Type: t, Payload: buf}, nil
}

func cutShort(t Type, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %v frame cut short: %w", core.ErrProtocol, t, io.ErrUnexpectedEOF)
	}
	return err
}

// Expect reads one frame of type want. A Reject frame instead is decoded and
// returned as a *RejectError; any other type is a protocol violation.
func Expect(r io.Reader, want Type, limit int) ([]byte, error) {
	f, err := ReadFrame(r, nil, limit)
	if err != nil {
		return nil, err
	}
	if f.Type == want {
		return f.Payload, nil
	}
	if f.Type == TypeReject {
		rj, err := DecodeReject(f.Payload)
		if err != nil {
			return nil, err
		}
		return nil, rj.Err()
	}
	return nil, fmt.Errorf("%w: got %v frame, want %v", core.ErrProtocol, f.Type, want)
}
