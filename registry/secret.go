package registry

import (
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/nacl/box"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

// SecretSize is the size of a mesh secret.
const SecretSize = 32

// Secret is one generation of the mesh secret: the key from which members
// derive discovery tokens and relay mailbox keys. It never prints.
type Secret struct {
	// Generation numbers the secret; it rises with every rotation.
	Generation uint64
	// Key is the secret itself.
	Key [SecretSize]byte
}

// String shows the generation only.
func (s Secret) String() string { return fmt.Sprintf("mesh-secret(gen %d)", s.Generation) }

// GoString shows the generation only, so %#v cannot leak the key.
func (s Secret) GoString() string { return s.String() }

// NewRotation returns an operation installing a fresh mesh secret
// generation (one above the current), read from r, sealed with an anonymous
// X25519 box to the Noise key of every trusted and owner device, and to
// no one else. Issue one after every revocation, and whenever
// NeedsRotation reports true.
func (s *State) NewRotation(id *identity.Identity, at core.Timestamp, r io.Reader) (Op, error) {
	var key [SecretSize]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		return Op{}, fmt.Errorf("new mesh secret: %w", err)
	}
	op := Op{Kind: OpRotateSecret, At: at, Generation: s.Generation() + 1}
	for _, d := range s.Devices() {
		if !d.Trust.CanSync() {
			continue
		}
		pub, err := noiseKey(d.PublicKey)
		if err != nil {
			return Op{}, err
		}
		sealed, err := box.SealAnonymous(nil, key[:], pub, r)
		if err != nil {
			return Op{}, fmt.Errorf("seal mesh secret: %w", err)
		}
		sl := Sealed{Device: d.ID}
		copy(sl.Box[:], sealed)
		op.Sealed = append(op.Sealed, sl)
	}
	return s.build(id, op)
}

// Generation returns the current mesh secret generation (0: none yet).
func (s *State) Generation() uint64 {
	if s.view.secret == nil {
		return 0
	}
	return s.view.secret.Generation
}

// OpenSecret returns the current mesh secret as id can read it. A device
// that is not among the current generation's recipients (revoked, or added
// after the last rotation) gets ErrNoSecret.
func (s *State) OpenSecret(id *identity.Identity) (Secret, error) {
	if s.view.secret == nil {
		return Secret{}, fmt.Errorf("open mesh secret: %w: no generation yet", ErrNoSecret)
	}
	return s.view.secret.OpenSecret(id)
}

// OpenSecret opens the copy of a rotation's secret sealed to id.
func (o *Op) OpenSecret(id *identity.Identity) (Secret, error) {
	if o.Kind != OpRotateSecret {
		return Secret{}, fmt.Errorf("%w: %s carries no secret", ErrInvalidOp, o.Kind)
	}
	i := slices.IndexFunc(o.Sealed, func(sl Sealed) bool { return sl.Device == id.DeviceID() })
	if i < 0 {
		return Secret{}, fmt.Errorf("open mesh secret generation %d: %w", o.Generation, ErrNoSecret)
	}
	var pub, priv [32]byte
	copy(pub[:], id.NoisePublic())
	copy(priv[:], id.NoisePrivate())
	key, ok := box.OpenAnonymous(nil, o.Sealed[i].Box[:], &pub, &priv)
	if !ok || len(key) != SecretSize {
		return Secret{}, fmt.Errorf("open mesh secret generation %d: %w", o.Generation, core.ErrCorrupt)
	}
	out := Secret{Generation: o.Generation}
	copy(out.Key[:], key)
	return out, nil
}

// NeedsRotation reports whether the current secret generation must be
// replaced: there is none, a revoked device holds it, or a trusted device
// lacks it (for example one added concurrently with the last rotation).
func (s *State) NeedsRotation() bool {
	sec := s.view.secret
	if sec == nil {
		return true
	}
	holds := map[core.DeviceID]bool{}
	for _, sl := range sec.Sealed {
		holds[sl.Device] = true
	}
	for id, d := range s.view.devices {
		if d.Trust.CanSync() != holds[id] {
			return true
		}
	}
	return false
}

func noiseKey(pub core.PublicKey) (*[32]byte, error) {
	k, err := identity.NoisePublicFor(pub)
	if err != nil {
		return nil, fmt.Errorf("seal mesh secret: %w", err)
	}
	var out [32]byte
	copy(out[:], k)
	return &out, nil
}

// openAnonymous is box.OpenAnonymous, named for tests of who can read what.
func openAnonymous(sealed []byte, pub, priv *[32]byte) ([]byte, bool) {
	return box.OpenAnonymous(nil, sealed, pub, priv)
}
