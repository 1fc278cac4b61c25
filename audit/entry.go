package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/devicemesh/federation/core"
)

// Limits on an entry's Detail. They keep entries small and make it hard to
// smuggle payloads or personal text into the log.
const (
	// MaxFields is the largest number of fields in a Detail.
	MaxFields = 16
	// MaxKeyLen is the longest field key in bytes.
	MaxKeyLen = 32
	// MaxTextLen is the longest field text in bytes.
	MaxTextLen = 64
)

// HashSize is the size of PrevHash and Hash.
const HashSize = sha256.Size

// Hash is a SHA-256 link of the audit chain.
type Hash [HashSize]byte

// Field is one small structured fact about an entry: a count, a collection
// name, a reason code. Key is lower-case ASCII letters, digits, '_' and '.';
// Text, when set, is printable ASCII without spaces (an identifier, never a
// sentence).
type Field struct {
	Key  string
	Num  int64
	Text string
}

// Num returns a numeric field.
func Num(key string, n int64) Field { return Field{Key: key, Num: n} }

// Text returns a short identifier field.
func Text(key, s string) Field { return Field{Key: key, Text: s} }

// Detail is an entry's fields. Append stores them sorted by key.
type Detail []Field

// Get returns the field named key and whether it exists.
func (d Detail) Get(key string) (Field, bool) {
	for _, f := range d {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}

// Entry is one row of the audit log.
type Entry struct {
	// Seq numbers entries from 1 without gaps; Append assigns it.
	Seq uint64
	// At is when the event happened, at millisecond precision; Append fills
	// it from the Log's clock when zero.
	At time.Time
	// Kind says what happened.
	Kind Kind
	// Device is the device concerned (zero: none, e.g. a local event).
	Device core.DeviceID
	// Detail holds small structured facts (counts, names, reasons).
	Detail Detail
	// PrevHash is the Hash of the previous entry; Append assigns it.
	PrevHash Hash
	// Hash chains this entry to PrevHash; Append assigns it.
	Hash Hash
}

const domain = "devicemesh/audit/v1"

// ComputeHash returns SHA-256(PrevHash || canonical encoding of e), the
// value e.Hash must hold for e to verify.
func (e *Entry) ComputeHash() Hash {
	h := sha256.New()
	h.Write(e.PrevHash[:])
	h.Write(e.canonical())
	var out Hash
	h.Sum(out[:0])
	return out
}

func (e *Entry) canonical() []byte {
	kind := e.Kind.String()
	b := make([]byte, 0, 128)
	b = append(b, domain...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(e.At.UnixMilli()))
	b = append(b, byte(len(kind)))
	b = append(b, kind...)
	b = append(b, e.Device[:]...)
	return append(b, EncodeDetail(e.Detail)...)
}

// normalize validates e's caller-supplied fields and returns a copy with a
// sorted detail and a millisecond UTC time.
func normalize(e Entry) (Entry, error) {
	if !e.Kind.Valid() {
		return e, fmt.Errorf("%w: kind %d", ErrInvalidEntry, uint8(e.Kind))
	}
	d := slices.Clone(e.Detail)
	slices.SortFunc(d, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	if err := validateDetail(d); err != nil {
		return e, err
	}
	e.Detail = d
	e.At = time.UnixMilli(e.At.UnixMilli()).UTC()
	return e, nil
}

func validateDetail(d Detail) error {
	if len(d) > MaxFields {
		return fmt.Errorf("%w: %d detail fields (max %d)", ErrInvalidEntry, len(d), MaxFields)
	}
	for i, f := range d {
		if f.Key == "" || len(f.Key) > MaxKeyLen || strings.Trim(f.Key, "abcdefghijklmnopqrstuvwxyz0123456789_.") != "" {
			return fmt.Errorf("%w: detail key %q", ErrInvalidEntry, f.Key)
		}
		if i > 0 && d[i-1].Key >= f.Key {
			return fmt.Errorf("%w: duplicate or unsorted detail key %q", ErrInvalidEntry, f.Key)
		}
		if len(f.Text) > MaxTextLen {
			return fmt.Errorf("%w: detail %q text longer than %d bytes", ErrInvalidEntry, f.Key, MaxTextLen)
		}
		for j := 0; j < len(f.Text); j++ {
			if c := f.Text[j]; c <= ' ' || c > '~' {
				return fmt.Errorf("%w: detail %q text is not an identifier", ErrInvalidEntry, f.Key)
			}
		}
	}
	return nil
}

// EncodeDetail returns the canonical encoding of d (see the package doc).
// d must be valid (as Append ensures).
func EncodeDetail(d Detail) []byte {
	b := make([]byte, 0, 1+len(d)*24)
	b = append(b, byte(len(d)))
	for _, f := range d {
		b = append(b, byte(len(f.Key)))
		b = append(b, f.Key...)
		b = binary.BigEndian.AppendUint64(b, uint64(f.Num))
		b = append(b, byte(len(f.Text)))
		b = append(b, f.Text...)
	}
	return b
}

// DecodeDetail parses the canonical encoding of a Detail. It refuses
// truncated, trailing, oversized or non-canonical input with
// ErrMalformedDetail and never panics.
func DecodeDetail(b []byte) (Detail, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty", ErrMalformedDetail)
	}
	n := int(b[0])
	if n > MaxFields {
		return nil, fmt.Errorf("%w: %d fields", ErrMalformedDetail, n)
	}
	b = b[1:]
	var d Detail
	if n > 0 {
		d = make(Detail, 0, n)
	}
	for i := 0; i < n; i++ {
		key, rest, ok := readString(b)
		if !ok || len(rest) < 8 {
			return nil, fmt.Errorf("%w: truncated field %d", ErrMalformedDetail, i)
		}
		num := int64(binary.BigEndian.Uint64(rest))
		text, rest, ok := readString(rest[8:])
		if !ok {
			return nil, fmt.Errorf("%w: truncated field %d", ErrMalformedDetail, i)
		}
		d = append(d, Field{Key: key, Num: num, Text: text})
		b = rest
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformedDetail, len(b))
	}
	if err := validateDetail(d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedDetail, err)
	}
	return d, nil
}

func readString(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// SalvageKey is the detail field that marks an entry made by Salvage.
const SalvageKey = "audit_error"

// Salvage returns a valid substitute for an entry that Append refused as
// invalid, so that the event is still recorded: the same kind (KindRefusal
// if its kind is invalid), device and time, the fields of its detail that
// are valid on their own (the first of duplicated keys, at most
// MaxFields-2), a field SalvageKey ("invalid_entry") and a count of the
// fields dropped ("audit_dropped_fields").
func Salvage(e Entry) Entry {
	out := Entry{Kind: e.Kind, At: e.At, Device: e.Device}
	if !out.Kind.Valid() {
		out.Kind = KindRefusal
	}
	d := slices.Clone(e.Detail)
	slices.SortStableFunc(d, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	var keep Detail
	for _, f := range d {
		if f.Key == SalvageKey || f.Key == "audit_dropped_fields" || len(keep) >= MaxFields-2 {
			continue
		}
		if len(keep) > 0 && keep[len(keep)-1].Key == f.Key {
			continue
		}
		if validateDetail(Detail{f}) == nil {
			keep = append(keep, f)
		}
	}
	dropped := int64(len(e.Detail) - len(keep))
	out.Detail = append(keep, Text(SalvageKey, "invalid_entry"), Num("audit_dropped_fields", dropped))
	return out
}
