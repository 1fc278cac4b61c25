package discovery

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
)

// Limits of a sealed announcement. MaxSealed keeps a blob inside a BEP 44
// value (1000 bytes, bencoded) and a single mDNS packet.
const (
	// SealBucket is the padding granularity of the sealed plaintext, so
	// lengths tell little about the addresses inside.
	SealBucket = 64
	// MaxAddrs is the most addresses one announcement carries.
	MaxAddrs = 16
	// MaxAddrLen is the longest address an announcement carries.
	MaxAddrLen = 255
	// MaxSealed is the largest sealed announcement.
	MaxSealed = 896
	// DefaultMaxAge is how old an announcement may be when opened, unless
	// the mechanism says otherwise: two rotation periods.
	DefaultMaxAge = 2 * DefaultPeriod
	// DefaultMaxSkew is how far in the future an announcement's time may be.
	DefaultMaxSkew = 5 * time.Minute
)

const (
	sealVersion  = 1
	sealOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	sealAD       = "devicemesh/discovery/v1/seal"
	signContext  = "devicemesh/discovery/v1/announce"
)

// Announcement is what a device says about itself: where it can be reached,
// as of when. Opened announcements carry a valid signature by Key, whose
// device Device is (Open also checks Key against the registry).
type Announcement struct {
	Device core.DeviceID
	Key    core.PublicKey
	Addrs  []string
	At     time.Time
}

// Seal makes the announcement that signer is reachable at addrs as of at,
// readable by the holders of sec only, for the mechanism named by purpose.
// rand supplies the nonce (nil: crypto/rand). It fails with ErrTooLarge when
// the addresses do not fit the limits.
func Seal(sec registry.Secret, purpose string, signer Signer, addrs []string, at time.Time, rand io.Reader) ([]byte, error) {
	if len(addrs) > MaxAddrs {
		return nil, fmt.Errorf("seal announcement: %d addresses: %w", len(addrs), ErrTooLarge)
	}
	body := make([]byte, 0, 256)
	pub := signer.PublicKey()
	if core.DeviceIDFromKey(pub) != signer.DeviceID() {
		return nil, fmt.Errorf("seal announcement: %w: the signer's key is not its device's", core.ErrInvalidArgument)
	}
	body = append(body, pub[:]...)
	body = binary.BigEndian.AppendUint64(body, uint64(at.UnixMilli()))
	body = append(body, byte(len(addrs)))
	for _, a := range addrs {
		if len(a) == 0 || len(a) > MaxAddrLen {
			return nil, fmt.Errorf("seal announcement: address of %d bytes: %w", len(a), ErrTooLarge)
		}
		body = append(body, byte(len(a)))
		body = append(body, a...)
	}
	sig := signer.Sign(signedBytes(sec, purpose, body))
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("seal announcement: signature of %d bytes: %w", len(sig), core.ErrInvalidArgument)
	}
	plain := append(body, sig...)
	if pad := len(plain) % SealBucket; pad != 0 {
		plain = append(plain, make([]byte, SealBucket-pad)...)
	}
	if len(plain)+sealOverhead > MaxSealed {
		return nil, fmt.Errorf("seal announcement: %d bytes: %w", len(plain)+sealOverhead, ErrTooLarge)
	}
	aead := sealAEAD(sec, purpose)
	out := make([]byte, 1+chacha20poly1305.NonceSizeX, sealOverhead+len(plain))
	out[0] = sealVersion
	if err := readRand(rand, out[1:]); err != nil {
		return nil, fmt.Errorf("seal announcement: nonce: %w", err)
	}
	return aead.Seal(out, out[1:], plain, adBytes(sec, purpose)), nil
}

// Open decrypts and verifies a sealed announcement: it must open under sec
// for purpose (else ErrNotMember), come from a device for which trusted
// returns a key (else ErrUnknownDevice), and carry that device's signature
// with that key (else ErrForged). Open does not judge the time: see Guard.
func Open(sec registry.Secret, purpose string, blob []byte, trusted func(core.DeviceID) (core.PublicKey, bool)) (Announcement, error) {
	a, err := OpenAny(sec, purpose, blob)
	if err != nil {
		return Announcement{}, err
	}
	pub, ok := trusted(a.Device)
	if !ok {
		return Announcement{}, fmt.Errorf("open announcement from %s: %w", a.Device, ErrUnknownDevice)
	}
	if pub != a.Key {
		return Announcement{}, fmt.Errorf("open announcement from %s: %w: not the registry's key", a.Device, ErrForged)
	}
	return a, nil
}

// OpenAny is Open for a reader that knows no device yet (pairing by code):
// the announcement must open under sec and carry a valid signature by the
// key inside it, and that key is all it proves. The caller pins Key for
// what follows (the pairing handshake).
func OpenAny(sec registry.Secret, purpose string, blob []byte) (Announcement, error) {
	if len(blob) < sealOverhead || len(blob) > MaxSealed || blob[0] != sealVersion {
		return Announcement{}, fmt.Errorf("open announcement: %d bytes: %w", len(blob), ErrNotMember)
	}
	nonce := blob[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := sealAEAD(sec, purpose).Open(nil, nonce, blob[1+chacha20poly1305.NonceSizeX:], adBytes(sec, purpose))
	if err != nil {
		return Announcement{}, fmt.Errorf("open announcement: %w", ErrNotMember)
	}
	a, bodyLen, err := decodeBody(plain)
	if err != nil {
		return Announcement{}, err
	}
	sig := plain[bodyLen : bodyLen+ed25519.SignatureSize]
	if !identity.Verify(a.Key, signedBytes(sec, purpose, plain[:bodyLen]), sig) {
		return Announcement{}, fmt.Errorf("open announcement from %s: %w", a.Device, ErrForged)
	}
	return a, nil
}

// decodeBody parses the plaintext: body, signature, zero padding. It returns
// the announcement and the length of the signed body.
func decodeBody(p []byte) (Announcement, int, error) {
	const fixed = 32 + 8 + 1
	if len(p) < fixed+ed25519.SignatureSize {
		return Announcement{}, 0, fmt.Errorf("open announcement: short body: %w", ErrMalformed)
	}
	var a Announcement
	copy(a.Key[:], p[:32])
	a.Device = core.DeviceIDFromKey(a.Key)
	a.At = time.UnixMilli(int64(binary.BigEndian.Uint64(p[32:40])))
	n := int(p[40])
	if n > MaxAddrs {
		return Announcement{}, 0, fmt.Errorf("open announcement: %d addresses: %w", n, ErrMalformed)
	}
	off := fixed
	for range n {
		if off >= len(p) {
			return Announcement{}, 0, fmt.Errorf("open announcement: truncated address: %w", ErrMalformed)
		}
		l := int(p[off])
		off++
		if l == 0 || off+l > len(p) {
			return Announcement{}, 0, fmt.Errorf("open announcement: bad address length: %w", ErrMalformed)
		}
		a.Addrs = append(a.Addrs, string(p[off:off+l]))
		off += l
	}
	if off+ed25519.SignatureSize > len(p) {
		return Announcement{}, 0, fmt.Errorf("open announcement: truncated signature: %w", ErrMalformed)
	}
	for _, b := range p[off+ed25519.SignatureSize:] {
		if b != 0 {
			return Announcement{}, 0, fmt.Errorf("open announcement: non-zero padding: %w", ErrMalformed)
		}
	}
	return a, off, nil
}

func sealAEAD(sec registry.Secret, purpose string) interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
} {
	k := Key(sec, Label{Purpose: purpose + "/seal"})
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		panic("discovery: XChaCha20-Poly1305 with a 32-byte key: " + err.Error())
	}
	return aead
}

func adBytes(sec registry.Secret, purpose string) []byte {
	ad := make([]byte, 0, len(sealAD)+len(purpose)+10)
	ad = append(ad, sealAD...)
	ad = append(ad, 0)
	ad = append(ad, purpose...)
	ad = append(ad, 0)
	return binary.BigEndian.AppendUint64(ad, sec.Generation)
}

func signedBytes(sec registry.Secret, purpose string, body []byte) []byte {
	m := make([]byte, 0, len(signContext)+len(purpose)+10+len(body))
	m = append(m, signContext...)
	m = append(m, 0)
	m = append(m, purpose...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint64(m, sec.Generation)
	return append(m, body...)
}

// Guard accepts announcements that are recent and, per device, never older
// than one already accepted, so a recorded announcement replayed later
// cannot send the node back to an address the device has left. The zero
// value uses DefaultMaxAge and DefaultMaxSkew. A Guard is safe for
// concurrent use.
type Guard struct {
	// MaxAge is how old an announcement may be (0: DefaultMaxAge).
	MaxAge time.Duration
	// MaxSkew is how far ahead of now its time may be (0: DefaultMaxSkew).
	MaxSkew time.Duration

	mu   sync.Mutex
	last map[core.DeviceID]time.Time
}

// Check accepts a (returning nil) if its time lies within
// [now-MaxAge, now+MaxSkew] and is not before the last accepted
// announcement of the same device; else it returns an error wrapping
// ErrStale. Repeats of the same announcement are accepted.
func (g *Guard) Check(a Announcement, now time.Time) error {
	maxAge, maxSkew := g.MaxAge, g.MaxSkew
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	if a.At.Before(now.Add(-maxAge)) || a.At.After(now.Add(maxSkew)) {
		return fmt.Errorf("announcement from %s at %s, now %s: %w", a.Device, a.At.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrStale)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if last, ok := g.last[a.Device]; ok && a.At.Before(last) {
		return fmt.Errorf("announcement from %s older than one accepted: %w", a.Device, ErrStale)
	}
	if g.last == nil {
		g.last = map[core.DeviceID]time.Time{}
	}
	g.last[a.Device] = a.At
	return nil
}

// Forget drops what the guard remembers of device (for example once it is
// revoked).
func (g *Guard) Forget(device core.DeviceID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.last, device)
}
