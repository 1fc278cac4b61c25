// Package identity creates, stores and loads a device's long-term key pair.
//
// A device is one Ed25519 key pair: the public key is the device's
// PublicKey, its SHA-256 the DeviceID. Ed25519 signs registry operations; the
// X25519 key that authenticates Noise handshakes is derived from the same
// key pair (the standard birational map), so a single public key, pinned in
// the registry, covers both. Private keys never print: Identity's String and
// GoString show only the device id.
package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"

	"github.com/devicemesh/federation/core"
)

// MetaKey is the store metadata key under which the identity is kept.
const MetaKey = "identity.ed25519.seed"

// Identity is a device's private key pair.
type Identity struct {
	priv ed25519.PrivateKey
	pub  core.PublicKey
	id   core.DeviceID
}

// Generate creates a new identity from rand (nil: crypto/rand).
func Generate(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed rebuilds an identity from its 32-byte Ed25519 seed.
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: identity seed of %d bytes", core.ErrCorrupt, len(seed))
	}
	priv := ed25519.NewKeyFromSeed(seed)
	var pub core.PublicKey
	copy(pub[:], priv.Public().(ed25519.PublicKey))
	return &Identity{priv: priv, pub: pub, id: core.DeviceIDFromKey(pub)}, nil
}

// MetaStore is the part of a store that identity needs.
type MetaStore interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	SetMeta(ctx context.Context, key string, value []byte) error
}

// LoadOrCreate returns the identity kept in s, creating and storing one on
// first start.
func LoadOrCreate(ctx context.Context, s MetaStore, r io.Reader) (*Identity, error) {
	seed, err := s.Meta(ctx, MetaKey)
	if err == nil {
		return FromSeed(seed)
	}
	if !errors.Is(err, core.ErrNotFound) {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	id, err := Generate(r)
	if err != nil {
		return nil, err
	}
	if err := s.SetMeta(ctx, MetaKey, id.priv.Seed()); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	return id, nil
}

// DeviceID returns the device id.
func (i *Identity) DeviceID() core.DeviceID { return i.id }

// PublicKey returns the Ed25519 public key.
func (i *Identity) PublicKey() core.PublicKey { return i.pub }

// Sign signs msg with the device's Ed25519 key.
func (i *Identity) Sign(msg []byte) []byte { return ed25519.Sign(i.priv, msg) }

// Verify checks an Ed25519 signature made by the device owning pub.
func Verify(pub core.PublicKey, msg, sig []byte) bool {
	return ed25519.Verify(ed25519.PublicKey(pub[:]), msg, sig)
}

// NoisePrivate returns the X25519 private key derived from the Ed25519 seed
// (the first half of SHA-512(seed), as Ed25519 itself uses it).
func (i *Identity) NoisePrivate() []byte {
	h := sha512.Sum512(i.priv.Seed())
	k := make([]byte, 32)
	copy(k, h[:32])
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
	return k
}

// NoisePublic returns the X25519 public key matching NoisePrivate.
func (i *Identity) NoisePublic() []byte {
	k, _ := NoisePublicFor(i.pub) // our own key is always a valid point
	return k
}

// NoisePublicFor maps an Ed25519 public key to the X25519 public key its owner
// uses in Noise handshakes.
func NoisePublicFor(pub core.PublicKey) ([]byte, error) {
	p, err := new(edwards25519.Point).SetBytes(pub[:])
	if err != nil {
		return nil, fmt.Errorf("%w: public key is not a curve point", core.ErrCorrupt)
	}
	return p.BytesMontgomery(), nil
}

// String shows the device id only.
func (i *Identity) String() string { return "identity(" + i.id.Short() + ")" }

// GoString shows the device id only, so %#v cannot leak the key.
func (i *Identity) GoString() string { return i.String() }
