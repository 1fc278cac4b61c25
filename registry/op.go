package registry

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// OpKind is what a registry operation does.
type OpKind uint8

// Registry operation kinds.
const (
	// OpAdd adds a device, or raises its trust level (approval).
	OpAdd OpKind = iota + 1
	// OpRevoke revokes a device for good.
	OpRevoke
	// OpRename changes a device's name.
	OpRename
	// OpSetPolicy changes a device's sync policy.
	OpSetPolicy
	// OpRotateSecret installs a new generation of the mesh secret, sealed
	// to each device that may read it.
	OpRotateSecret
	opKindEnd
)

// String names the operation kind.
func (k OpKind) String() string {
	switch k {
	case OpAdd:
		return "add"
	case OpRevoke:
		return "revoke"
	case OpRename:
		return "rename"
	case OpSetPolicy:
		return "set-policy"
	case OpRotateSecret:
		return "rotate-secret"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Limits on operation fields.
const (
	// MaxNameLen is the longest device name in bytes.
	MaxNameLen = 64
	// MaxPolicyLen is the largest sync policy in bytes.
	MaxPolicyLen = 4096
	// MaxRecipients is the most devices a secret generation is sealed to.
	MaxRecipients = 64
	// SealedSize is the size of one sealed secret (an anonymous NaCl box
	// of a 32-byte secret).
	SealedSize = 32 + 32 + 16
	// MaxOpSize bounds the encoding of one operation.
	MaxOpSize = 1 + 1 + 32 + 8 + 32 + 32 + 32 + 2 + 2 + MaxNameLen + MaxPolicyLen + 1 + MaxRecipients*(32+SealedSize) + 1 + ed25519.SignatureSize
)

// OpHash identifies an operation: the SHA-256 of its signed bytes.
type OpHash [32]byte

// Sealed is one device's copy of a mesh secret generation.
type Sealed struct {
	// Device is the recipient.
	Device core.DeviceID
	// Box is the secret sealed to the recipient's Noise (X25519) key.
	Box [SealedSize]byte
}

// Op is a signed registry operation. Fields that do not apply to Kind are
// zero. Build operations with the State's New* methods, which fill Prev and
// sign them.
type Op struct {
	Kind OpKind
	// AuthorKey is the acting device's public key; Author derives from it.
	AuthorKey core.PublicKey
	// At is the author's HLC time of the operation; it orders
	// last-writer-wins fields.
	At core.Timestamp
	// Prev is the hash of the author's previous operation (zero for its
	// first): each author's operations form a chain, so a revocation can
	// name exactly which of the revoked device's operations still count.
	Prev OpHash
	// Target is the device the operation is about (zero for rotations).
	Target core.DeviceID
	// TargetKey is the added device's public key (OpAdd).
	TargetKey core.PublicKey
	// Trust is the level granted (OpAdd: pending, trusted or owner).
	Trust TrustLevel
	// Type is the added device's type (OpAdd).
	Type DeviceType
	// Name is the device name (OpAdd, OpRename).
	Name string
	// Policy is the opaque sync policy (OpAdd, OpSetPolicy).
	Policy []byte
	// Cutoff is, for OpRevoke, the hash of the last operation by Target
	// that the revoker had applied: Target's operations on the chain ending
	// there keep their effect, every other one of its operations is void.
	Cutoff OpHash
	// Generation numbers the mesh secret (OpRotateSecret).
	Generation uint64
	// Sealed holds the new secret sealed to each recipient, sorted by
	// device (OpRotateSecret).
	Sealed []Sealed
	// Sig is the author's Ed25519 signature over the canonical encoding.
	Sig []byte
}

// Author returns the acting device's id.
func (o *Op) Author() core.DeviceID { return core.DeviceIDFromKey(o.AuthorKey) }

// Hash returns the operation's identity: SHA-256 of its signed bytes.
func (o *Op) Hash() OpHash { return sha256.Sum256(o.signedBytes()) }

const opDomain = "devicemesh/registry-op/v1\x00"

// signedBytes is the domain-separated canonical body the signature covers.
func (o *Op) signedBytes() []byte {
	return append([]byte(opDomain), o.body()...)
}

// body is the canonical encoding without signature (see the package doc).
func (o *Op) body() []byte {
	b := make([]byte, 0, 256)
	b = append(b, 1, byte(o.Kind))
	b = append(b, o.AuthorKey[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(o.At))
	b = append(b, o.Prev[:]...)
	b = append(b, o.Target[:]...)
	switch o.Kind {
	case OpAdd:
		b = append(b, o.TargetKey[:]...)
		b = append(b, byte(o.Trust), byte(o.Type))
		b = appendBytes(b, []byte(o.Name))
		b = appendBytes(b, o.Policy)
	case OpRevoke:
		b = append(b, o.Cutoff[:]...)
	case OpRename:
		b = appendBytes(b, []byte(o.Name))
	case OpSetPolicy:
		b = appendBytes(b, o.Policy)
	case OpRotateSecret:
		b = binary.BigEndian.AppendUint64(b, o.Generation)
		b = append(b, byte(len(o.Sealed)))
		for _, s := range o.Sealed {
			b = append(b, s.Device[:]...)
			b = append(b, s.Box[:]...)
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// Marshal returns the operation's wire encoding: the canonical body, then a
// one-byte signature length and the signature.
func (o *Op) Marshal() []byte {
	b := o.body()
	b = append(b, byte(len(o.Sig)))
	return append(b, o.Sig...)
}

// sign fills the signature with id's key; id must be the author.
func (o *Op) sign(id *identity.Identity) {
	o.AuthorKey = id.PublicKey()
	o.Sig = id.Sign(o.signedBytes())
}

// check validates the fields and the signature: everything about an
// operation that does not depend on registry state.
func (o *Op) check() error {
	if err := o.validate(); err != nil {
		return err
	}
	if len(o.Sig) == 0 {
		return fmt.Errorf("%s by %s: %w", o.Kind, o.Author().Short(), ErrUnsigned)
	}
	if !identity.Verify(o.AuthorKey, o.signedBytes(), o.Sig) {
		return fmt.Errorf("%s by %s: %w", o.Kind, o.Author().Short(), ErrForged)
	}
	return nil
}

func (o *Op) validate() error {
	bad := func(why string) error { return fmt.Errorf("%w: %s %s", ErrInvalidOp, o.Kind, why) }
	if o.Kind == 0 || o.Kind >= opKindEnd {
		return bad("unknown kind")
	}
	if o.Kind != OpRotateSecret && o.Target.IsZero() {
		return bad("without target")
	}
	if len(o.Name) > MaxNameLen || !utf8.ValidString(o.Name) {
		return bad("name too long or not UTF-8")
	}
	if len(o.Policy) > MaxPolicyLen {
		return bad("policy too large")
	}
	switch o.Kind {
	case OpAdd:
		if core.DeviceIDFromKey(o.TargetKey) != o.Target {
			return bad("target id does not match its key")
		}
		if o.Trust < TrustPending || o.Trust > TrustOwner || o.Type >= typeEnd {
			return bad("trust level or type out of range")
		}
	case OpRotateSecret:
		if o.Generation == 0 || len(o.Sealed) == 0 || len(o.Sealed) > MaxRecipients {
			return bad("generation or recipients out of range")
		}
		for i := 1; i < len(o.Sealed); i++ {
			if o.Sealed[i-1].Device.Compare(o.Sealed[i].Device) >= 0 {
				return bad("recipients unsorted or repeated")
			}
		}
	}
	return nil
}

// UnmarshalOp decodes an operation from its wire encoding, refusing
// truncated, oversized, trailing or non-canonical input with ErrMalformed.
// It checks the structure but not the signature or permissions (Verify and
// State.Apply do). It never panics.
func UnmarshalOp(b []byte) (Op, error) {
	var o Op
	if len(b) > MaxOpSize {
		return o, fmt.Errorf("%w: operation of %d bytes", ErrMalformed, len(b))
	}
	r := reader{b: b}
	if v := r.byte(); v != 1 {
		return o, fmt.Errorf("%w: operation version %d", ErrMalformed, v)
	}
	o.Kind = OpKind(r.byte())
	r.copy(o.AuthorKey[:])
	o.At = core.Timestamp(r.uint64())
	r.copy(o.Prev[:])
	r.copy(o.Target[:])
	switch o.Kind {
	case OpAdd:
		r.copy(o.TargetKey[:])
		o.Trust, o.Type = TrustLevel(r.byte()), DeviceType(r.byte())
		o.Name = string(r.bytes())
		o.Policy = r.bytes()
	case OpRevoke:
		r.copy(o.Cutoff[:])
	case OpRename:
		o.Name = string(r.bytes())
	case OpSetPolicy:
		o.Policy = r.bytes()
	case OpRotateSecret:
		o.Generation = r.uint64()
		n := int(r.byte())
		if n > MaxRecipients {
			return o, fmt.Errorf("%w: %d recipients", ErrMalformed, n)
		}
		for i := 0; i < n && !r.short; i++ {
			var s Sealed
			r.copy(s.Device[:])
			r.copy(s.Box[:])
			o.Sealed = append(o.Sealed, s)
		}
	}
	if sl := int(r.byte()); sl > 0 {
		o.Sig = make([]byte, sl)
		r.copy(o.Sig)
	}
	if r.short || len(r.b) != 0 {
		return Op{}, fmt.Errorf("%w: operation truncated or with trailing bytes", ErrMalformed)
	}
	if err := o.validate(); err != nil {
		return Op{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(o.Marshal(), b) {
		return Op{}, fmt.Errorf("%w: non-canonical operation encoding", ErrMalformed)
	}
	return o, nil
}

// reader consumes a byte slice; reads past the end set short and yield
// zeros, so decoders check once at the end.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) take(n int) []byte {
	if r.short || len(r.b) < n {
		r.short = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) copy(dst []byte) { copy(dst, r.take(len(dst))) }

func (r *reader) bytes() []byte {
	v := r.take(2)
	if v == nil {
		return nil
	}
	n := int(binary.BigEndian.Uint16(v))
	if n == 0 {
		return nil
	}
	return bytes.Clone(r.take(n))
}
