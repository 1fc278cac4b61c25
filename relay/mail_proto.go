package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/varint"
	"github.com/devicemesh/federation/internal/wire"
)

// The mail protocol, spoken on a stream whose kind byte is KindMail. The
// client sends requests, one at a time, each one frame (internal/wire
// framing: type, 4-byte length, payload); the relay answers each before
// the next is read. Integers are minimal unsigned varints.
//
//	Deposit (0x40)  mailbox (16), envelope (one of EnvelopeSizes)
//	                answer: MailOK with the mail's sequence number
//	Collect (0x41)  mailbox (16), after (cursor), max (1..MaxCollect)
//	                answer: up to max MailItem frames, mail of the mailbox
//	                with sequence numbers above after, in order, then
//	                MailEnd with the cursor to collect from next time
//	Ack     (0x42)  mailbox (16), n (1..MaxAck), n x sequence number:
//	                the relay deletes those mails of that mailbox
//	                answer: MailOK with the count deleted
//	MailOK  (0x48)  a count or sequence number
//	MailItem(0x49)  sequence number, envelope
//	MailEnd (0x4A)  next cursor
//	MailErr (0x4F)  code (1 byte, a MailCode), reason (text, <= 256 bytes)
//
// Any request may be answered with MailErr instead; the stream stays
// usable unless the code is MailBadRequest.
const (
	TypeMailDeposit wire.Type = 0x40
	TypeMailCollect wire.Type = 0x41
	TypeMailAck     wire.Type = 0x42
	TypeMailOK      wire.Type = 0x48
	TypeMailItem    wire.Type = 0x49
	TypeMailEnd     wire.Type = 0x4A
	TypeMailErr     wire.Type = 0x4F
)

// Mail protocol limits.
const (
	// MaxCollect bounds the mails one Collect returns.
	MaxCollect = 64
	// MaxAck bounds the sequence numbers of one Ack.
	MaxAck = 1024
	// MaxMailFrame bounds every frame of the mail protocol.
	MaxMailFrame = MaxEnvelope + 64
	maxReason    = 256
)

// MailCode is the code of a MailErr frame.
type MailCode byte

// Mail error codes.
const (
	MailBadRequest  MailCode = 1 // malformed request: the stream ends
	MailFull        MailCode = 2 // the mailbox is at its quota
	MailQuota       MailCode = 3 // the client is at its quota
	MailTooLarge    MailCode = 4 // not an envelope size
	MailUnavailable MailCode = 5 // the relay's store is unavailable now
)

// Sentinel errors for the relay's answers.
var (
	ErrMailboxFull      = errors.New("relay mailbox full")
	ErrClientQuota      = errors.New("relay client quota exceeded")
	ErrEnvelopeSize     = errors.New("relay refused envelope size")
	ErrMailUnavailable  = errors.New("relay mail store unavailable")
	ErrMailBadRequest   = errors.New("relay refused malformed mail request")
	errUnknownMailError = errors.New("relay mail error")
)

func (c MailCode) err() error {
	switch c {
	case MailBadRequest:
		return ErrMailBadRequest
	case MailFull:
		return ErrMailboxFull
	case MailQuota:
		return ErrClientQuota
	case MailTooLarge:
		return ErrEnvelopeSize
	case MailUnavailable:
		return ErrMailUnavailable
	}
	return errUnknownMailError
}

// MailCodeOf maps an error to the code sent for it (MailUnavailable for
// anything unknown).
func MailCodeOf(err error) MailCode {
	switch {
	case errors.Is(err, ErrMailBadRequest), errors.Is(err, core.ErrProtocol):
		return MailBadRequest
	case errors.Is(err, ErrMailboxFull):
		return MailFull
	case errors.Is(err, ErrClientQuota):
		return MailQuota
	case errors.Is(err, ErrEnvelopeSize):
		return MailTooLarge
	}
	return MailUnavailable
}

// Mail is one envelope held in a mailbox.
type Mail struct {
	Seq      uint64
	Envelope []byte
}

// MailRequest is a decoded request.
type MailRequest struct {
	Type     wire.Type
	Mailbox  Mailbox
	Envelope []byte   // Deposit
	After    uint64   // Collect
	Max      int      // Collect
	Seqs     []uint64 // Ack
}

// AppendMailRequest appends the payload of r (its Type says which).
func AppendMailRequest(dst []byte, r MailRequest) []byte {
	dst = append(dst, r.Mailbox[:]...)
	switch r.Type {
	case TypeMailDeposit:
		dst = append(dst, r.Envelope...)
	case TypeMailCollect:
		dst = binary.AppendUvarint(dst, r.After)
		dst = binary.AppendUvarint(dst, uint64(r.Max))
	case TypeMailAck:
		dst = binary.AppendUvarint(dst, uint64(len(r.Seqs)))
		for _, s := range r.Seqs {
			dst = binary.AppendUvarint(dst, s)
		}
	}
	return dst
}

// DecodeMailRequest decodes a request frame. Envelope aliases payload;
// Seqs is allocated at most one slot per two bytes of payload.
func DecodeMailRequest(t wire.Type, payload []byte) (MailRequest, error) {
	r := MailRequest{Type: t}
	if len(payload) < MailboxSize {
		return r, fmt.Errorf("%w: %v request shorter than a mailbox", core.ErrProtocol, t)
	}
	copy(r.Mailbox[:], payload)
	b := payload[MailboxSize:]
	var err error
	switch t {
	case TypeMailDeposit:
		if !ValidEnvelopeSize(len(b)) {
			return r, fmt.Errorf("%w: envelope of %d bytes", ErrEnvelopeSize, len(b))
		}
		r.Envelope = b
		return r, nil
	case TypeMailCollect:
		var n uint64
		if r.After, b, err = uvarint(b); err == nil {
			n, b, err = uvarint(b)
		}
		if err == nil && (n == 0 || n > MaxCollect) {
			err = fmt.Errorf("%w: collect of %d", core.ErrProtocol, n)
		}
		r.Max = int(n)
	case TypeMailAck:
		var n uint64
		n, b, err = uvarint(b)
		if err == nil && (n == 0 || n > MaxAck || n > uint64(len(b))) {
			err = fmt.Errorf("%w: ack of %d", core.ErrProtocol, n)
		}
		if err == nil {
			r.Seqs = make([]uint64, 0, n)
		}
		for i := uint64(0); i < n && err == nil; i++ {
			var s uint64
			s, b, err = uvarint(b)
			r.Seqs = append(r.Seqs, s)
		}
	default:
		return r, fmt.Errorf("%w: %v is no mail request", core.ErrProtocol, t)
	}
	if err == nil && len(b) != 0 {
		err = fmt.Errorf("%w: trailing bytes", core.ErrProtocol)
	}
	return r, err
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := varint.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad varint", core.ErrProtocol)
	}
	return v, b[n:], nil
}

// DecodeMailItem decodes a MailItem payload; Envelope aliases payload.
func DecodeMailItem(payload []byte) (Mail, error) {
	s, b, err := uvarint(payload)
	if err != nil {
		return Mail{}, err
	}
	if !ValidEnvelopeSize(len(b)) {
		return Mail{}, fmt.Errorf("%w: mail of %d bytes", core.ErrProtocol, len(b))
	}
	return Mail{Seq: s, Envelope: b}, nil
}

// AppendMailItem appends a MailItem payload.
func AppendMailItem(dst []byte, m Mail) []byte {
	return append(binary.AppendUvarint(dst, m.Seq), m.Envelope...)
}

// AppendMailErr appends a MailErr payload.
func AppendMailErr(dst []byte, code MailCode, reason string) []byte {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return append(append(dst, byte(code)), reason...)
}

// DecodeMailErr decodes a MailErr payload into an error wrapping the
// code's sentinel.
func DecodeMailErr(payload []byte) error {
	if len(payload) < 1 || len(payload) > 1+maxReason {
		return fmt.Errorf("%w: mail error of %d bytes", core.ErrProtocol, len(payload))
	}
	return fmt.Errorf("%w: %q", MailCode(payload[0]).err(), payload[1:])
}

// decodeWholeUvarint decodes a payload that is one uvarint.
func decodeWholeUvarint(payload []byte) (uint64, error) {
	v, rest, err := uvarint(payload)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: trailing bytes", core.ErrProtocol)
	}
	return v, err
}

// MailConn is the client side of one mail stream. Its methods are safe for
// concurrent use (they take turns).
type MailConn struct {
	mu  sync.Mutex
	s   io.ReadWriteCloser
	buf []byte
}

// NewMailConn speaks the mail protocol on s, a stream to the relay whose
// kind byte (KindMail) has been sent already.
func NewMailConn(s io.ReadWriteCloser) *MailConn { return &MailConn{s: s} }

// Close closes the stream.
func (c *MailConn) Close() error { return c.s.Close() }

func (c *MailConn) request(ctx context.Context, r MailRequest) (wire.Frame, error) {
	if err := ctx.Err(); err != nil {
		return wire.Frame{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.s.Close() })
	defer stop()
	if err := wire.WriteFrame(c.s, r.Type, AppendMailRequest(nil, r)); err != nil {
		return wire.Frame{}, fmt.Errorf("relay mail: %w", err)
	}
	return c.read(ctx)
}

func (c *MailConn) read(ctx context.Context) (wire.Frame, error) {
	f, err := wire.ReadFrame(c.s, c.buf, MaxMailFrame)
	if err != nil {
		if ctx.Err() != nil {
			return f, ctx.Err()
		}
		return f, fmt.Errorf("relay mail: %w", err)
	}
	if f.Type == TypeMailErr {
		return f, DecodeMailErr(f.Payload)
	}
	return f, nil
}

func (c *MailConn) expect(f wire.Frame, t wire.Type) (uint64, error) {
	if f.Type != t {
		return 0, fmt.Errorf("%w: relay answered %v, want %v", core.ErrProtocol, f.Type, t)
	}
	return decodeWholeUvarint(f.Payload)
}

// Deposit leaves env in mailbox mb and returns its sequence number.
func (c *MailConn) Deposit(ctx context.Context, mb Mailbox, env []byte) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.request(ctx, MailRequest{Type: TypeMailDeposit, Mailbox: mb, Envelope: env})
	if err != nil {
		return 0, fmt.Errorf("deposit: %w", err)
	}
	return c.expect(f, TypeMailOK)
}

// Collect returns up to limit mails of mb after cursor after, and the
// cursor to collect from next.
func (c *MailConn) Collect(ctx context.Context, mb Mailbox, after uint64, limit int) ([]Mail, uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit = min(max(limit, 1), MaxCollect)
	f, err := c.request(ctx, MailRequest{Type: TypeMailCollect, Mailbox: mb, After: after, Max: limit})
	var out []Mail
	for ; err == nil && f.Type == TypeMailItem; f, err = c.read(ctx) {
		var m Mail
		if m, err = DecodeMailItem(f.Payload); err != nil {
			break
		}
		if len(out) == limit || m.Seq <= after {
			err = fmt.Errorf("%w: relay sent mail out of order", core.ErrProtocol)
			break
		}
		m.Envelope = append([]byte(nil), m.Envelope...)
		out = append(out, m)
		after = m.Seq
	}
	if err != nil {
		return nil, 0, fmt.Errorf("collect: %w", err)
	}
	next, err := c.expect(f, TypeMailEnd)
	if err != nil {
		return nil, 0, fmt.Errorf("collect: %w", err)
	}
	return out, max(next, after), nil
}

// Ack deletes the mails seqs of mb and returns how many the relay deleted.
func (c *MailConn) Ack(ctx context.Context, mb Mailbox, seqs []uint64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := 0
	for len(seqs) > 0 {
		n := min(len(seqs), MaxAck)
		f, err := c.request(ctx, MailRequest{Type: TypeMailAck, Mailbox: mb, Seqs: seqs[:n]})
		if err != nil {
			return done, fmt.Errorf("ack: %w", err)
		}
		k, err := c.expect(f, TypeMailOK)
		if err != nil {
			return done, fmt.Errorf("ack: %w", err)
		}
		done += int(k)
		seqs = seqs[n:]
	}
	return done, nil
}
