package discovery

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
)

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	require.NoError(t, err)
	return id
}

func trust(ids ...*identity.Identity) func(core.DeviceID) (core.PublicKey, bool) {
	m := map[core.DeviceID]core.PublicKey{}
	for _, id := range ids {
		m[id.DeviceID()] = id.PublicKey()
	}
	return func(d core.DeviceID) (core.PublicKey, bool) { k, ok := m[d]; return k, ok }
}

// forger signs with one key but claims another device's id.
type forger struct {
	claim *identity.Identity
	key   *identity.Identity
}

func (f forger) DeviceID() core.DeviceID   { return f.claim.DeviceID() }
func (f forger) PublicKey() core.PublicKey { return f.claim.PublicKey() }
func (f forger) Sign(m []byte) []byte      { return f.key.Sign(m) }

func TestSealOpenRoundTrip(t *testing.T) {
	sec := secret(1, 2)
	alice := newID(t)
	at := time.UnixMilli(1_780_000_000_123)
	addrs := []string{"192.168.1.20:4433", "[fe80::1%eth0]:4433", "[2001:db8::7]:4433"}
	blob, err := Seal(sec, "mdns", alice, addrs, at, nil)
	require.NoError(t, err)
	require.Zero(t, (len(blob)-sealOverhead)%SealBucket, "plaintext padded to a bucket")

	a, err := Open(sec, "mdns", blob, trust(alice))
	require.NoError(t, err)
	require.Equal(t, alice.DeviceID(), a.Device)
	require.Equal(t, addrs, a.Addrs)
	require.True(t, at.Equal(a.At))

	// Nothing readable leaks: neither the id, the key nor any address.
	id, pub := alice.DeviceID(), alice.PublicKey()
	for _, secretBytes := range [][]byte{id[:], pub[:], []byte("192.168.1.20"), []byte("4433")} {
		require.False(t, bytes.Contains(blob, secretBytes))
	}
	// Two seals of the same thing share no bytes beyond the version.
	blob2, err := Seal(sec, "mdns", alice, addrs, at, nil)
	require.NoError(t, err)
	require.NotEqual(t, blob[1:25], blob2[1:25])
	require.NotEqual(t, blob[25:], blob2[25:])
}

func TestOpenRefuses(t *testing.T) {
	sec := secret(1, 2)
	alice, bob, mallory := newID(t), newID(t), newID(t)
	at := time.Now()
	good, err := Seal(sec, "mdns", alice, []string{"10.0.0.1:1"}, at, nil)
	require.NoError(t, err)

	otherMesh := secret(50, 2)
	nextGen := sec
	nextGen.Generation++
	check := func(name string, err, want error) {
		t.Helper()
		require.Error(t, err, name)
		require.True(t, errors.Is(err, want), "%s: got %v, want %v", name, err, want)
		require.True(t, errors.Is(err, core.ErrUnauthorized) || errors.Is(err, core.ErrCorrupt), name)
	}
	_, err = Open(otherMesh, "mdns", good, trust(alice))
	check("another mesh", err, ErrNotMember)
	_, err = Open(nextGen, "mdns", good, trust(alice))
	check("another generation", err, ErrNotMember)
	_, err = Open(sec, "dht", good, trust(alice))
	check("another purpose", err, ErrNotMember)
	_, err = Open(sec, "mdns", good, trust(bob))
	check("untrusted device", err, ErrUnknownDevice)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x40
		_, err = Open(sec, "mdns", bad, trust(alice))
		check("flipped byte", err, ErrNotMember)
	}
	_, err = Open(sec, "mdns", good[:len(good)-1], trust(alice))
	check("truncated", err, ErrNotMember)

	// A member (mallory holds the secret) claiming to be alice: the AEAD
	// opens, the signature does not verify against alice's key.
	forged, err := Seal(sec, "mdns", forger{claim: alice, key: mallory}, []string{"6.6.6.6:1"}, at, nil)
	require.NoError(t, err)
	_, err = Open(sec, "mdns", forged, trust(alice, mallory))
	check("forged", err, ErrForged)
}

func TestSealLimits(t *testing.T) {
	sec := secret(1, 2)
	alice := newID(t)
	many := make([]string, MaxAddrs+1)
	for i := range many {
		many[i] = "1.2.3.4:5"
	}
	_, err := Seal(sec, "p", alice, many, time.Now(), nil)
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = Seal(sec, "p", alice, []string{string(make([]byte, 256))}, time.Now(), nil)
	require.ErrorIs(t, err, ErrTooLarge)
	_, err = Seal(sec, "p", alice, []string{""}, time.Now(), nil)
	require.ErrorIs(t, err, ErrTooLarge)
	long := make([]string, 8)
	for i := range long {
		long[i] = string(bytes.Repeat([]byte{'a'}, 200))
	}
	_, err = Seal(sec, "p", alice, long, time.Now(), nil)
	require.ErrorIs(t, err, ErrTooLarge, "over MaxSealed")
	ok := make([]string, 8)
	for i := range ok {
		ok[i] = "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535"
	}
	blob, err := Seal(sec, "p", alice, ok, time.Now(), rand.Reader)
	require.NoError(t, err)
	require.LessOrEqual(t, len(blob), MaxSealed)
}

func TestGuard(t *testing.T) {
	var g Guard
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var d core.DeviceID
	d[0] = 1
	require.NoError(t, g.Check(Announcement{Device: d, At: now.Add(-time.Minute)}, now))
	require.NoError(t, g.Check(Announcement{Device: d, At: now.Add(-time.Minute)}, now), "a repeat is fine")
	require.ErrorIs(t, g.Check(Announcement{Device: d, At: now.Add(-2 * time.Minute)}, now), ErrStale, "replay of an older one")
	require.NoError(t, g.Check(Announcement{Device: d, At: now}, now))
	var e core.DeviceID
	e[0] = 2
	require.ErrorIs(t, g.Check(Announcement{Device: e, At: now.Add(-DefaultMaxAge - time.Second)}, now), ErrStale, "too old")
	require.ErrorIs(t, g.Check(Announcement{Device: e, At: now.Add(DefaultMaxSkew + time.Second)}, now), ErrStale, "from the future")
	require.NoError(t, g.Check(Announcement{Device: e, At: now.Add(-DefaultMaxAge + time.Second)}, now))
	g.Forget(d)
	require.NoError(t, g.Check(Announcement{Device: d, At: now.Add(-time.Hour)}, now), "forgotten")
}

func FuzzOpen(f *testing.F) {
	sec := secret(1, 2)
	alice, err := identity.FromSeed(bytes.Repeat([]byte{3}, 32))
	require.NoError(f, err)
	good, err := Seal(sec, "mdns", alice, []string{"10.0.0.1:1", "[::1]:2"}, time.UnixMilli(1), nil)
	require.NoError(f, err)
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Open(sec, "mdns", b, trust(alice))
		if err == nil {
			require.Equal(t, alice.DeviceID(), a.Device)
		}
	})
}

func TestOpenAnyAndKeyMismatch(t *testing.T) {
	sec := secret(3, 1)
	alice, other := newID(t), newID(t)
	blob, err := Seal(sec, "pair", alice, []string{"10.0.0.9:5"}, time.Now(), nil)
	require.NoError(t, err)
	a, err := OpenAny(sec, "pair", blob)
	require.NoError(t, err)
	require.Equal(t, alice.PublicKey(), a.Key)
	require.Equal(t, alice.DeviceID(), a.Device)
	// The registry holds another key under alice's id: refused.
	wrong := func(core.DeviceID) (core.PublicKey, bool) { return other.PublicKey(), true }
	_, err = Open(sec, "pair", blob, wrong)
	require.ErrorIs(t, err, ErrForged)
	_, err = OpenAny(secret(4, 1), "pair", blob)
	require.ErrorIs(t, err, ErrNotMember)
	// A signer whose key is not its id's cannot seal.
	_, err = Seal(sec, "pair", forger{claim: alice, key: other}, nil, time.Now(), nil)
	require.NoError(t, err, "claims alice's key and id consistently; the signature is what fails")
	_, err = Seal(sec, "pair", mixed{alice, other}, nil, time.Now(), nil)
	require.ErrorIs(t, err, core.ErrInvalidArgument)
}

// mixed names one device and another's key.
type mixed struct{ id, key *identity.Identity }

func (m mixed) DeviceID() core.DeviceID   { return m.id.DeviceID() }
func (m mixed) PublicKey() core.PublicKey { return m.key.PublicKey() }
func (m mixed) Sign(b []byte) []byte      { return m.key.Sign(b) }
