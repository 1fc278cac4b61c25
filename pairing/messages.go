package pairing

import (
	"encoding/binary"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
)

// Frame types of the pairing protocol (see the package doc).
const (
	typeHello     wire.Type = 0x30 // joiner: who it is, commitment, proof of the code
	typeChallenge wire.Type = 0x31 // inviter: who it is, nonce, proof of the code
	typeReveal    wire.Type = 0x32 // joiner: the committed nonce
	typeVerdict   wire.Type = 0x33 // joiner: its user's confirmation
	typeWelcome   wire.Type = 0x34 // inviter: the handover
	typeAck       wire.Type = 0x35 // joiner: digest of the handover it received
	typeRefuse    wire.Type = 0x3F // either side: refusal with a code
)

// Sizes of the protocol's fixed fields.
const (
	nonceSize  = 32
	macSize    = 32
	digestSize = 32
	version    = 1
	// maxSmallFrame bounds every pairing frame except Welcome.
	maxSmallFrame = 3 + registry.MaxNameLen + nonceSize + macSize
)

// Device describes one side of a pairing as the other side learns it.
type Device struct {
	// ID and Key are the device's identity, as proven in the session's
	// handshake.
	ID  core.DeviceID
	Key core.PublicKey
	// Name and Type are what the device calls itself, for display only:
	// at most registry.MaxNameLen bytes of printable UTF-8.
	Name string
	Type registry.DeviceType
}

// hello is the joiner's first message.
type hello struct {
	typ    registry.DeviceType
	name   string
	commit [digestSize]byte
	proof  [macSize]byte
}

// challenge is the inviter's answer to a hello whose proof verified.
type challenge struct {
	typ   registry.DeviceType
	name  string
	nonce [nonceSize]byte
	proof [macSize]byte
}

// Handover is what the inviting device gives the new one once both users
// approved: opaque to this package, filled in by the node (for example the
// registry operations that add the device and the mesh secret sealed to
// it). Both fields together must fit in one frame (MaxHandover).
type Handover struct {
	// Registry is the registry state the new device starts from (for
	// example the signed operations, the add of the new device among them).
	Registry []byte
	// Secret is the mesh secret, sealed to the new device's key.
	Secret []byte
}

// MaxHandover is the largest encoded Handover: 8 bytes of lengths plus the
// two fields.
const MaxHandover = wire.MaxFrameSize

// appendDevice appends type 1 | name length 1 | name.
func appendDevice(b []byte, t registry.DeviceType, name string) []byte {
	b = append(b, byte(t), byte(len(name)))
	return append(b, name...)
}

// decodeDevice reads what appendDevice wrote and returns the rest.
func decodeDevice(b []byte) (registry.DeviceType, string, []byte, error) {
	if len(b) < 2 {
		return 0, "", nil, fmt.Errorf("%w: pairing device info cut short", core.ErrProtocol)
	}
	t, n := registry.DeviceType(b[0]), int(b[1])
	if _, err := registry.ParseDeviceType(t.String()); err != nil {
		return 0, "", nil, fmt.Errorf("%w: unknown device type %d", core.ErrProtocol, b[0])
	}
	b = b[2:]
	if n > len(b) {
		return 0, "", nil, fmt.Errorf("%w: pairing device name cut short", core.ErrProtocol)
	}
	name := string(b[:n])
	if err := checkName(name); err != nil {
		return 0, "", nil, fmt.Errorf("%w: %w", core.ErrProtocol, err)
	}
	return t, name, b[n:], nil
}

// checkDevice checks what a device says about itself before it is sent.
func checkDevice(t registry.DeviceType, name string) error {
	if _, err := registry.ParseDeviceType(t.String()); err != nil {
		return fmt.Errorf("%w: %w", core.ErrInvalidArgument, err)
	}
	if err := checkName(name); err != nil {
		return fmt.Errorf("%w: %w", core.ErrInvalidArgument, err)
	}
	return nil
}

// checkName accepts at most registry.MaxNameLen bytes of UTF-8 made of
// printable characters and spaces, so that a hostile name cannot reorder
// or hide text in the approval prompt.
func checkName(name string) error {
	if len(name) > registry.MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("device name too long or not UTF-8")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("device name with unprintable character %U", r)
		}
	}
	return nil
}

func (h hello) encode() []byte {
	b := make([]byte, 0, 3+len(h.name)+digestSize+macSize)
	b = append(b, version)
	b = appendDevice(b, h.typ, h.name)
	b = append(b, h.commit[:]...)
	return append(b, h.proof[:]...)
}

func decodeHello(b []byte) (hello, error) {
	var h hello
	if len(b) < 1 || b[0] != version {
		return h, fmt.Errorf("%w: pairing version", core.ErrVersionMismatch)
	}
	t, name, rest, err := decodeDevice(b[1:])
	if err != nil {
		return h, err
	}
	if len(rest) != digestSize+macSize {
		return h, fmt.Errorf("%w: pairing hello of wrong length", core.ErrProtocol)
	}
	h.typ, h.name = t, name
	copy(h.commit[:], rest)
	copy(h.proof[:], rest[digestSize:])
	return h, nil
}

func (c challenge) encode() []byte {
	b := make([]byte, 0, 2+len(c.name)+nonceSize+macSize)
	b = appendDevice(b, c.typ, c.name)
	b = append(b, c.nonce[:]...)
	return append(b, c.proof[:]...)
}

func decodeChallenge(b []byte) (challenge, error) {
	var c challenge
	t, name, rest, err := decodeDevice(b)
	if err != nil {
		return c, err
	}
	if len(rest) != nonceSize+macSize {
		return c, fmt.Errorf("%w: pairing challenge of wrong length", core.ErrProtocol)
	}
	c.typ, c.name = t, name
	copy(c.nonce[:], rest)
	copy(c.proof[:], rest[nonceSize:])
	return c, nil
}

// decodeFixed checks a payload of exactly n bytes (Reveal, Ack).
func decodeFixed(b []byte, n int, what string) ([]byte, error) {
	if len(b) != n {
		return nil, fmt.Errorf("%w: pairing %s of %d bytes, want %d", core.ErrProtocol, what, len(b), n)
	}
	return b, nil
}

// encodeVerdict and decodeVerdict carry the joiner's confirmation.
func encodeVerdict(ok bool) []byte {
	if ok {
		return []byte{1}
	}
	return []byte{0}
}

func decodeVerdict(b []byte) (bool, error) {
	if len(b) != 1 || b[0] > 1 {
		return false, fmt.Errorf("%w: pairing verdict", core.ErrProtocol)
	}
	return b[0] == 1, nil
}

func encodeRefuse(c refuseCode) []byte { return []byte{byte(c)} }

func decodeRefuse(b []byte) (refuseCode, error) {
	if len(b) != 1 || b[0] == 0 || refuseCode(b[0]) > refuseCodeMaximum {
		return 0, fmt.Errorf("%w: pairing refusal", core.ErrProtocol)
	}
	return refuseCode(b[0]), nil
}

// encode lays out registry length 4 | registry | secret length 4 | secret.
func (h Handover) encode() ([]byte, error) {
	if uint64(len(h.Registry))+uint64(len(h.Secret))+8 > MaxHandover {
		return nil, fmt.Errorf("%w: handover of %d bytes, limit %d", core.ErrFrameTooLarge, len(h.Registry)+len(h.Secret)+8, MaxHandover)
	}
	b := make([]byte, 0, 8+len(h.Registry)+len(h.Secret))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.Registry)))
	b = append(b, h.Registry...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.Secret)))
	return append(b, h.Secret...), nil
}

// decodeHandover reads what encode wrote; the fields are copies.
func decodeHandover(b []byte) (Handover, error) {
	field := func(b []byte) ([]byte, []byte, error) {
		if len(b) < 4 {
			return nil, nil, fmt.Errorf("%w: pairing handover cut short", core.ErrProtocol)
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			return nil, nil, fmt.Errorf("%w: pairing handover field of %d bytes overruns the frame", core.ErrProtocol, n)
		}
		return append([]byte{}, b[4:4+n]...), b[4+n:], nil
	}
	var h Handover
	var err error
	if h.Registry, b, err = field(b); err != nil {
		return Handover{}, err
	}
	if h.Secret, b, err = field(b); err != nil {
		return Handover{}, err
	}
	if len(b) != 0 {
		return Handover{}, fmt.Errorf("%w: %d bytes after the pairing handover", core.ErrProtocol, len(b))
	}
	return h, nil
}
