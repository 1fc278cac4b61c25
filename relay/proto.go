package relay

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"

	"github.com/devicemesh/federation/core"
)

// Stream kinds: the first byte of every stream a client opens.
const (
	// KindAuth is the first stream of a connection: the credential proof.
	KindAuth byte = 'A'
	// KindForward registers the pseudonym the client receives packets for.
	KindForward byte = 'F'
	// KindMail is relay mail.
	KindMail byte = 'M'
)

// ALPN is the application protocol of a client's QUIC connection.
const ALPN = "fedrelay/1"

// MaxFrame bounds a stream frame (WriteFrame, ReadFrame).
const MaxFrame = 1 << 20

// PseudonymSize is the size of a forwarding pseudonym.
const PseudonymSize = 16

// TokenSize is the size of a data-plane token.
const TokenSize = 16

// Data-plane packets (UDP, to and from the relay's data port; see the
// package doc): the first byte says which.
const (
	// DataSend: client to relay, [DataSend][token][destination][packet].
	DataSend byte = 0x01
	// DataDeliver: relay to client, [DataDeliver][source][packet].
	DataDeliver byte = 0x02
	// DataBind: client to relay, [DataBind][token]: packets for the
	// token's pseudonym come to this address from now on.
	DataBind byte = 0x03
	// DataBound: relay to client, [DataBound], the answer to DataBind.
	DataBound byte = 0x04
)

// Status bytes: the relay's answer to an auth or a registration.
const (
	StatusOK           byte = 0
	StatusUnauthorized byte = 1
	StatusBadRequest   byte = 2
	StatusBusy         byte = 3
)

// Errors a client can test for with errors.Is.
var (
	// ErrUnauthorized: the relay refused the credential.
	ErrUnauthorized = errors.New("relay: credential refused")
	// ErrBusy: the relay is at a limit for this client.
	ErrBusy = errors.New("relay: busy")
	// ErrFrameTooLarge: a frame above the limit.
	ErrFrameTooLarge = errors.New("relay: frame too large")
	// ErrBadAddr: not a relay address.
	ErrBadAddr = errors.New("relay: not a relay address")
)

// StatusErr maps a status byte to an error (nil for StatusOK).
func StatusErr(s byte, reason string) error {
	switch s {
	case StatusOK:
		return nil
	case StatusUnauthorized:
		return fmt.Errorf("%w: %s", ErrUnauthorized, reason)
	case StatusBusy:
		return fmt.Errorf("%w: %s", ErrBusy, reason)
	default:
		return fmt.Errorf("relay: refused (status %d): %s", s, reason)
	}
}

// WriteFrame writes b as one frame: a 4-byte big-endian length, then b.
func WriteFrame(w io.Writer, b []byte) error {
	if len(b) > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(b))
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame of at most max bytes (MaxFrame when max <= 0).
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read frame: %w", err)
	}
	return b, nil
}

// CredentialID names a credential: the first 16 bytes of the SHA-256 of
// its public key, in hex. It is what the relay operator lists to admit a
// mesh and what the relay's logs and limits are keyed by.
type CredentialID string

// IDOf returns the id of a credential's public key.
func IDOf(pub ed25519.PublicKey) CredentialID {
	h := sha256.Sum256(pub)
	return CredentialID(hex.EncodeToString(h[:16]))
}

// Credential is a mesh's relay credential for one generation of the mesh
// secret. It never prints its private key.
type Credential struct {
	priv ed25519.PrivateKey
}

// NewCredential derives the credential of one mesh secret generation.
func NewCredential(secret [32]byte, generation uint64) Credential {
	seed := derive(secret, "fedrelay credential v1", generation, ed25519.SeedSize)
	return Credential{priv: ed25519.NewKeyFromSeed(seed)}
}

// Public returns the credential's public key.
func (c Credential) Public() ed25519.PublicKey { return c.priv.Public().(ed25519.PublicKey) }

// ID returns the credential's id.
func (c Credential) ID() CredentialID { return IDOf(c.Public()) }

// String shows the id only.
func (c Credential) String() string { return "relay-credential(" + string(c.ID()) + ")" }

// authContext is what an auth proof signs, before the connection's
// exporter.
const authContext = "fedrelay auth v1"

// ExporterLabel is the TLS exporter label the auth proof binds to.
const ExporterLabel = "EXPORTER-fedrelay-auth"

// Sign returns the proof for a connection with TLS exporter binding.
func (c Credential) Sign(binding []byte) []byte {
	return ed25519.Sign(c.priv, append([]byte(authContext), binding...))
}

// AuthHello is the first frame of the auth stream.
type AuthHello struct {
	Public ed25519.PublicKey
	Sig    []byte
}

// Marshal encodes the hello: version 1, the key, the signature.
func (h AuthHello) Marshal() []byte {
	b := make([]byte, 0, 1+ed25519.PublicKeySize+ed25519.SignatureSize)
	b = append(b, 1)
	b = append(b, h.Public...)
	return append(b, h.Sig...)
}

// ParseAuthHello decodes a hello.
func ParseAuthHello(b []byte) (AuthHello, error) {
	if len(b) != 1+ed25519.PublicKeySize+ed25519.SignatureSize || b[0] != 1 {
		return AuthHello{}, fmt.Errorf("relay: malformed auth hello (%d bytes)", len(b))
	}
	return AuthHello{
		Public: ed25519.PublicKey(b[1 : 1+ed25519.PublicKeySize]),
		Sig:    b[1+ed25519.PublicKeySize:],
	}, nil
}

// Verify checks the proof against the connection's exporter binding.
func (h AuthHello) Verify(binding []byte) bool {
	return ed25519.Verify(h.Public, append([]byte(authContext), binding...), h.Sig)
}

// PseudonymOf is a device's forwarding pseudonym.
type PseudonymOf [PseudonymSize]byte

// String is the pseudonym in hex.
func (p PseudonymOf) String() string { return hex.EncodeToString(p[:]) }

// ParsePseudonym decodes a pseudonym in hex.
func ParsePseudonym(s string) (PseudonymOf, error) {
	var p PseudonymOf
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != PseudonymSize {
		return p, fmt.Errorf("%w: bad pseudonym %q", ErrBadAddr, s)
	}
	copy(p[:], b)
	return p, nil
}

// Pseudonym derives device's forwarding pseudonym for one generation of
// the mesh secret: HMAC-SHA256 of the device id under a key derived from
// the secret, truncated to 16 bytes.
func Pseudonym(secret [32]byte, generation uint64, device core.DeviceID) PseudonymOf {
	k := derive(secret, "fedrelay pseudonym v1", generation, 32)
	m := hmac.New(sha256.New, k)
	m.Write(device[:])
	var p PseudonymOf
	copy(p[:], m.Sum(nil))
	return p
}

func derive(secret [32]byte, label string, generation uint64, n int) []byte {
	info := binary.BigEndian.AppendUint64([]byte(label), generation)
	out := make([]byte, n)
	if _, err := io.ReadFull(hkdf.New(sha256.New, secret[:], nil, info), out); err != nil {
		panic(err) // hkdf only fails past 255 blocks
	}
	return out
}
