package identity_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/curve25519"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/store/memstore"
)

func TestNoiseKeyMatchesPublicKey(t *testing.T) {
	id, err := identity.Generate(nil)
	require.NoError(t, err)
	pub, err := curve25519.X25519(id.NoisePrivate(), curve25519.Basepoint)
	require.NoError(t, err)
	require.Equal(t, pub, id.NoisePublic(), "X25519 derived from the seed must match the map of the Ed25519 public key")
	require.True(t, identity.Verify(id.PublicKey(), []byte("m"), id.Sign([]byte("m"))))
	require.False(t, identity.Verify(id.PublicKey(), []byte("n"), id.Sign([]byte("m"))))
}

func TestLoadOrCreatePersists(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	a, err := identity.LoadOrCreate(ctx, s, nil)
	require.NoError(t, err)
	b, err := identity.LoadOrCreate(ctx, s, nil)
	require.NoError(t, err)
	require.Equal(t, a.DeviceID(), b.DeviceID())
	require.Equal(t, core.DeviceIDFromKey(a.PublicKey()), a.DeviceID())
}

func TestIdentityNeverPrintsKey(t *testing.T) {
	id, err := identity.Generate(nil)
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%v %+v %#v %s", id, id, id, id)} {
		require.NotContains(t, s, fmt.Sprintf("%x", id.NoisePrivate()[:8]))
		require.Contains(t, s, id.DeviceID().Short())
	}
}
