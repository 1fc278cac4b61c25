package transport

import (
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"
	"io"
	"sync"

	"github.com/flynn/noise"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// noiseKeys is one identity's Noise key material, derived once per
// transport instead of once per handshake, and a small cache of the X25519
// keys that peers' Ed25519 keys map to (identity.NoisePublicFor costs a
// point decompression and an inversion; a mesh has a handful of devices).
type noiseKeys struct {
	static noise.DHKey
	priv   *ecdh.PrivateKey // static, parsed once

	mu    sync.Mutex
	peers map[core.PublicKey][]byte
}

// maxCachedPeers bounds noiseKeys.peers; past it the cache starts over.
const maxCachedPeers = 64

func newNoiseKeys(id *identity.Identity) *noiseKeys {
	k := &noiseKeys{static: noise.DHKey{Private: id.NoisePrivate(), Public: id.NoisePublic()}, peers: make(map[core.PublicKey][]byte)}
	// A valid identity always yields a valid X25519 scalar; on the
	// impossible failure DH falls back to parsing per use.
	k.priv, _ = ecdh.X25519().NewPrivateKey(k.static.Private)
	return k
}

// peerStatic is identity.NoisePublicFor(pub), cached.
func (k *noiseKeys) peerStatic(pub core.PublicKey) ([]byte, error) {
	k.mu.Lock()
	s, ok := k.peers[pub]
	k.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := identity.NoisePublicFor(pub)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if len(k.peers) >= maxCachedPeers {
		clear(k.peers)
	}
	k.peers[pub] = s
	k.mu.Unlock()
	return s, nil
}

// suite returns the Noise cipher suite for one handshake: 25519,
// ChaChaPoly, SHA-256, as noise.DH25519 but with a DH that reuses the
// parsed static key and the ephemeral key it generated. (x/crypto's X25519,
// behind noise.DH25519, recomputes the public key of the private scalar on
// every DH: a second scalar multiplication each time.)
func (k *noiseKeys) suite() noise.CipherSuite {
	return noise.NewCipherSuite(&handshakeDH{keys: k}, noise.CipherChaChaPoly, noise.HashSHA256)
}

// handshakeDH is the X25519 DH function of one handshake (not safe for
// concurrent use, as a handshake is not).
type handshakeDH struct {
	keys *noiseKeys
	eph  *ecdh.PrivateKey
	ephB []byte
}

var _ noise.DHFunc = (*handshakeDH)(nil)

func (d *handshakeDH) GenerateKeypair(rng io.Reader) (noise.DHKey, error) {
	k, err := ecdh.X25519().GenerateKey(rng)
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("x25519 key: %w", err)
	}
	d.eph, d.ephB = k, k.Bytes()
	return noise.DHKey{Private: d.ephB, Public: k.PublicKey().Bytes()}, nil
}

func (d *handshakeDH) DH(privkey, pubkey []byte) ([]byte, error) {
	var k *ecdh.PrivateKey
	switch {
	case d.eph != nil && subtle.ConstantTimeCompare(privkey, d.ephB) == 1:
		k = d.eph
	case d.keys.priv != nil && subtle.ConstantTimeCompare(privkey, d.keys.static.Private) == 1:
		k = d.keys.priv
	default:
		var err error
		if k, err = ecdh.X25519().NewPrivateKey(privkey); err != nil {
			return nil, err
		}
	}
	p, err := ecdh.X25519().NewPublicKey(pubkey)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p) // fails on a low-order point, as x/crypto's X25519 does
}

func (d *handshakeDH) DHLen() int     { return 32 }
func (d *handshakeDH) DHName() string { return "25519" }
