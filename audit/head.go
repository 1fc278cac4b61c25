package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
)

// SignedHead is a device's statement, signed with its device key, that its
// audit log held Head.Seq entries ending in Head.Hash. Devices replicate
// their signed heads to their peers, who keep the highest one of every
// device; a device whose own chain no longer contains a signed head of its
// own was rewritten or truncated (see the package doc, "Anchoring").
type SignedHead struct {
	// Key is the signing device's public key; the device is
	// core.DeviceIDFromKey(Key).
	Key core.PublicKey
	// Epoch counts the declared restores of the device's store from a
	// backup: a restore starts a new epoch, whose heads outrank every head
	// of older epochs (see CompareSigned). 0 before any restore.
	Epoch uint64
	// Head is the newest entry of the device's log when it signed.
	Head Head
	// Prev is the signed head this one supersedes in the device's store
	// (zero: none). Peers holding Prev check that Head extends it. The
	// first head of an epoch names the restored backup's head, of an older
	// epoch.
	Prev Head
	// At is when the head was signed (device clock, millisecond precision).
	At time.Time
	// Sig is the Ed25519 signature of the encoding above it.
	Sig []byte
}

// HeadSize is the length of a marshalled SignedHead.
const HeadSize = 1 + 32 + 8 + 8 + HashSize + 8 + HashSize + 8 + ed25519.SignatureSize

const (
	headVersion = 2
	headDomain  = "devicemesh/audit-head/v2"
)

// Device returns the id of the device that signed h.
func (h *SignedHead) Device() core.DeviceID { return core.DeviceIDFromKey(h.Key) }

// body is the signed part of the encoding:
//
//	version uint8 (2) | key 32 | epoch uint64 | seq uint64 | hash 32 |
//	prev seq uint64 | prev hash 32 | at int64 Unix ms
func (h *SignedHead) body() []byte {
	b := make([]byte, 0, HeadSize)
	b = append(b, headVersion)
	b = append(b, h.Key[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Head.Seq)
	b = append(b, h.Head.Hash[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Prev.Seq)
	b = append(b, h.Prev.Hash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(h.At.UnixMilli()))
}

// Sign sets h.At to millisecond precision and h.Sig to sign's signature of
// the head (sign is an Ed25519 signer for h.Key, such as
// identity.Identity.Sign).
func (h *SignedHead) Sign(sign func(msg []byte) []byte) {
	h.At = time.UnixMilli(h.At.UnixMilli()).UTC()
	h.Sig = sign(append([]byte(headDomain), h.body()...))
}

// Verify checks h's signature against h.Key. It returns an error wrapping
// ErrForgedHead when the signature does not verify or the head is
// inconsistent (Prev beyond Head).
func (h *SignedHead) Verify() error {
	if len(h.Sig) != ed25519.SignatureSize || !ed25519.Verify(h.Key[:], append([]byte(headDomain), h.body()...), h.Sig) {
		return fmt.Errorf("%w: bad signature for device %s", ErrForgedHead, h.Device().Short())
	}
	if h.Prev.Seq > h.Head.Seq {
		return fmt.Errorf("%w: previous head %d beyond head %d", ErrForgedHead, h.Prev.Seq, h.Head.Seq)
	}
	return nil
}

// Marshal returns the HeadSize-byte encoding of h: body, then signature.
func (h *SignedHead) Marshal() []byte { return append(h.body(), h.Sig...) }

// UnmarshalHead parses Marshal's encoding; it does not check the signature
// (Verify does). Malformed input is ErrMalformedHead.
func UnmarshalHead(b []byte) (SignedHead, error) {
	var h SignedHead
	if len(b) != HeadSize || b[0] != headVersion {
		return h, fmt.Errorf("%w: %d bytes", ErrMalformedHead, len(b))
	}
	b = b[1:]
	copy(h.Key[:], b)
	b = b[32:]
	h.Epoch = binary.BigEndian.Uint64(b)
	b = b[8:]
	h.Head.Seq = binary.BigEndian.Uint64(b)
	copy(h.Head.Hash[:], b[8:])
	b = b[8+HashSize:]
	h.Prev.Seq = binary.BigEndian.Uint64(b)
	copy(h.Prev.Hash[:], b[8:])
	b = b[8+HashSize:]
	h.At = time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
	h.Sig = bytes.Clone(b[8:])
	return h, nil
}

// CompareHeads orders two heads of one device: by entry count, then by
// hash bytes, so that every device keeping "the highest" keeps the same
// one. It returns -1, 0 or 1.
func CompareHeads(a, b Head) int {
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return bytes.Compare(a.Hash[:], b.Hash[:])
}

// CompareSigned orders two signed heads of one device: by epoch, then as
// CompareHeads. A head of a newer epoch (the device declared a restore)
// outranks every head of an older one, whatever their entry counts. It
// returns -1, 0 or 1.
func CompareSigned(a, b SignedHead) int {
	switch {
	case a.Epoch < b.Epoch:
		return -1
	case a.Epoch > b.Epoch:
		return 1
	}
	return CompareHeads(a.Head, b.Head)
}

// Extends reports whether next, a newer signed head of the device that
// signed held, provably or plausibly continues the history held names:
// next names held as its Prev, or supersedes a head newer than held (the
// holder missed some heads in between). It is false when next forks from
// held (same Prev position, other hash) or supersedes an older head than
// held, which a device that still had held would not do: its store lost
// held, by an undeclared restore from an older copy or by tampering. A head
// of a newer epoch than held always extends it: its device declared a
// restore, which drops the entries after the backup's head by design.
func Extends(held, next SignedHead) bool {
	switch {
	case next.Epoch > held.Epoch:
		return true
	case next.Epoch < held.Epoch:
		return false
	case next.Prev.Seq == held.Head.Seq:
		return next.Prev.Hash == held.Head.Hash
	case next.Prev.Seq > held.Head.Seq:
		return true
	}
	return false
}

// CheckHead reports whether the log holds head: an entry head.Seq whose
// Hash is head.Hash (a zero Head always holds). It reads one row; the
// rows before it are trusted to chain to it as Verify checked. It returns
// a *TamperError when the entry is missing (rows removed from the end) or
// differs (rows rewritten).
func (l *Log) CheckHead(ctx context.Context, head Head) error {
	if head.Seq == 0 {
		return nil
	}
	es, err := l.backend.Query(ctx, Filter{AfterSeq: head.Seq - 1, Limit: 1})
	if err != nil {
		return fmt.Errorf("audit check head: %w", err)
	}
	switch {
	case len(es) == 0 || es[0].Seq > head.Seq:
		return &TamperError{Seq: head.Seq, Reason: fmt.Sprintf("signed head %d is beyond the end of the log", head.Seq)}
	case es[0].Hash != head.Hash:
		return &TamperError{Seq: head.Seq, Reason: "row differs from the signed head"}
	}
	return nil
}
