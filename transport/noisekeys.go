package transport

import (
	"crypto/ecdh"
	"crypto/rand"
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

	// pool holds ephemeral keys made ahead, off the handshakes' critical
	// path (refill); each is taken once.
	pool chan *ecdh.PrivateKey
}

// maxCachedPeers bounds noiseKeys.peers; past it the cache starts over.
const maxCachedPeers = 64

func newNoiseKeys(id *identity.Identity) *noiseKeys {
	k := &noiseKeys{
		static: noise.DHKey{Private: id.NoisePrivate(), Public: id.NoisePublic()},
		peers:  make(map[core.PublicKey][]byte),
		pool:   make(chan *ecdh.PrivateKey, 2),
	}
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

// refill makes one ephemeral key for the pool unless it is full. Callers
// run it where nobody waits for them (after a handshake).
func (k *noiseKeys) refill() {
	if len(k.pool) == cap(k.pool) {
		return
	}
	e, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return
	}
	select {
	case k.pool <- e:
	default:
	}
}

// ephemeral takes a key from the pool, or makes one.
func (k *noiseKeys) ephemeral() (*ecdh.PrivateKey, error) {
	select {
	case e := <-k.pool:
		return e, nil
	default:
	}
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// precomputed is an IK initiator's work done before the connection
// exists: its ephemeral key, and the two DH values of its first message,
// es = DH(e, rs) and ss = DH(s, rs), which depend on keys only (the TLS
// binding enters through the prologue, into the hash, not the DHs).
type precomputed struct {
	eph  *ecdh.PrivateKey
	memo []*dhResult
}

// dhResult is one DH value computed ahead, possibly still running on its
// own goroutine until done is closed.
type dhResult struct {
	priv, pub []byte
	done      chan struct{}
	out       []byte
	err       error
}

// precomputeIK does an IK initiator's first computations towards the
// responder whose X25519 static key is rs; nil if they fail (the handshake
// then does them itself).
func (k *noiseKeys) precomputeIK(rs []byte) *precomputed {
	e, err := k.ephemeral()
	if err != nil {
		return nil
	}
	p := &precomputed{eph: e}
	d := &handshakeDH{keys: k}
	for _, priv := range [][]byte{e.Bytes(), k.static.Private} {
		r := &dhResult{priv: priv, pub: rs, done: make(chan struct{})}
		r.out, r.err = d.DH(priv, rs)
		close(r.done)
		p.memo = append(p.memo, r)
	}
	return p
}

// newDH returns the X25519 DH function for one handshake, to be used in
// its noise.CipherSuite (see suite): it works as noise.DH25519 but reuses
// the parsed static key and the ephemeral key it generated (x/crypto's
// X25519, behind noise.DH25519, recomputes the public key of the private
// scalar on every DH: a second scalar multiplication each time), takes
// work done ahead (pre, ahead), and computes some values on a second core
// while the handshake computes others. The caller must call wait before
// the handshake returns.
func (k *noiseKeys) newDH(pre *precomputed) *handshakeDH {
	return &handshakeDH{keys: k, pre: pre}
}

// suite is the Noise cipher suite of a handshake using d: 25519,
// ChaChaPoly, SHA-256.
func (d *handshakeDH) suite() noise.CipherSuite {
	return noise.NewCipherSuite(d, noise.CipherChaChaPoly, noise.HashSHA256)
}

// handshakeDH is the X25519 DH function of one handshake (not safe for
// concurrent use, as a handshake is not).
type handshakeDH struct {
	keys *noiseKeys
	pre  *precomputed // nil, or taken by the first GenerateKeypair
	eph  *ecdh.PrivateKey
	ephB []byte
	memo []*dhResult
}

// ahead starts computing DH(priv, pub) on its own goroutine, for a DH the
// handshake will ask for later: with the peer's ephemeral key read from
// its message before noise processes it, that DH runs alongside the ones
// noise computes first.
func (d *handshakeDH) ahead(priv *ecdh.PrivateKey, pub []byte) {
	r := &dhResult{priv: priv.Bytes(), pub: append([]byte(nil), pub...), done: make(chan struct{})}
	d.memo = append(d.memo, r)
	go func() {
		defer close(r.done)
		p, err := ecdh.X25519().NewPublicKey(r.pub)
		if err != nil {
			r.err = err
			return
		}
		r.out, r.err = priv.ECDH(p)
	}()
}

// wait returns once every DH started ahead has ended.
func (d *handshakeDH) wait() {
	for _, r := range d.memo {
		<-r.done
	}
	if d.pre != nil {
		for _, r := range d.pre.memo {
			<-r.done
		}
	}
}

// useEphemeral makes e the key the next GenerateKeypair returns.
func (d *handshakeDH) useEphemeral(e *ecdh.PrivateKey) {
	d.pre = &precomputed{eph: e}
}

var _ noise.DHFunc = (*handshakeDH)(nil)

// GenerateKeypair returns the precomputed ephemeral key, or one from the
// pool, or a new one (noise always passes crypto/rand as rng).
func (d *handshakeDH) GenerateKeypair(_ io.Reader) (noise.DHKey, error) {
	var k *ecdh.PrivateKey
	if d.pre != nil && d.pre.eph != nil {
		k = d.pre.eph
		d.memo = append(d.memo, d.pre.memo...)
		d.pre = nil
	} else {
		var err error
		if k, err = d.keys.ephemeral(); err != nil {
			return noise.DHKey{}, fmt.Errorf("x25519 key: %w", err)
		}
	}
	d.eph, d.ephB = k, k.Bytes()
	return noise.DHKey{Private: d.ephB, Public: k.PublicKey().Bytes()}, nil
}

func (d *handshakeDH) DH(privkey, pubkey []byte) ([]byte, error) {
	for _, m := range d.memo {
		if subtle.ConstantTimeCompare(privkey, m.priv) == 1 && string(pubkey) == string(m.pub) {
			<-m.done
			if m.err != nil {
				return nil, m.err
			}
			return append([]byte(nil), m.out...), nil
		}
	}
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
