package federation_test

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/registry"
)

// deviceType returns name when it is a device type's name ("phone",
// "laptop", ...), else "" (unknown): test devices are named freely.
func deviceType(name string) string {
	switch name {
	case "phone", "tablet", "laptop", "desktop", "server":
		return name
	}
	return ""
}

func quicNode(t *testing.T, name string, mut ...func(*federation.Config)) *federation.Node {
	t.Helper()
	cfg := federation.Config{
		Dir:     t.TempDir(),
		Device:  federation.DeviceConfig{Name: name, Type: deviceType(name)},
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
	}
	for _, m := range mut {
		m(&cfg)
	}
	n, err := federation.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	require.NoError(t, n.Start(context.Background()))
	return n
}

func TestPairingWithApprovalThenSync(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	require.NoError(t, phone.Put(ctx, "notes", "hello", []byte("from the phone")))

	var shownOnPhone string
	inv, err := phone.Invite(ctx, federation.InviteOptions{Approve: func(_ context.Context, r federation.PairRequest) (bool, error) {
		shownOnPhone = r.SAS
		return r.Peer.ID == laptop.DeviceID(), nil
	}})
	require.NoError(t, err)
	require.NotEmpty(t, inv.Code)

	var shownOnLaptop string
	req, err := laptop.Join(ctx, inv.QR, federation.JoinOptions{Show: func(r federation.PairRequest) { shownOnLaptop = r.SAS }})
	require.NoError(t, err)
	require.Equal(t, phone.DeviceID(), req.Peer.ID)
	require.NotEmpty(t, shownOnPhone)
	require.Equal(t, shownOnPhone, shownOnLaptop, "both devices show the same short authentication string")

	waitValue(t, laptop, "notes", "hello", "from the phone")
	require.NoError(t, laptop.Put(ctx, "notes", "back", []byte("from the laptop")))
	waitValue(t, phone, "notes", "back", "from the laptop")

	devs, err := phone.Devices(ctx)
	require.NoError(t, err)
	var entry *federation.Device
	for i := range devs {
		if devs[i].ID == laptop.DeviceID() {
			entry = &devs[i]
		}
	}
	require.NotNil(t, entry, "the laptop is in the phone's registry")
	require.Equal(t, "laptop", entry.Name)
	require.Equal(t, federation.TrustTrusted, entry.Trust)
	require.False(t, entry.LastSeen.IsZero(), "last_seen is updated on every session")

	// The invitation was single-use.
	tablet := quicNode(t, "tablet")
	_, err = tablet.Join(ctx, inv.QR, federation.JoinOptions{})
	require.Error(t, err)
}

func TestPairingRefusedGetsNothing(t *testing.T) {
	ctx := context.Background()
	phone, stranger := quicNode(t, "phone"), quicNode(t, "stranger")
	require.NoError(t, phone.Put(ctx, "notes", "secret", []byte("private")))
	inv, err := phone.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) {
		return false, nil // the user does not recognise the SAS
	}})
	require.NoError(t, err)
	_, err = stranger.Join(ctx, inv.QR, federation.JoinOptions{})
	require.Error(t, err)
	time.Sleep(200 * time.Millisecond)
	_, err = stranger.Get(ctx, "notes", "secret")
	require.ErrorIs(t, err, federation.ErrNotFound, "an unapproved device receives no data")
	st, err := stranger.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Store.Records)
	devs, err := phone.Devices(ctx)
	require.NoError(t, err)
	for _, d := range devs {
		require.Equal(t, phone.DeviceID(), d.ID, "only the phone itself is registered")
	}
	// Without an open invitation the stranger cannot even connect.
	require.Error(t, stranger.Connect(ctx, phone.Addr(), phone.DeviceID()))
}

func TestRevokedDeviceCutOff(t *testing.T) {
	ctx := context.Background()
	a, b := quicNode(t, "a"), quicNode(t, "b")
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Put(ctx, "notes", "before", []byte("1")))
	waitValue(t, b, "notes", "before", "1")

	start := time.Now()
	require.NoError(t, a.RevokeDevice(ctx, b.DeviceID()))
	require.Eventually(t, func() bool { return len(a.Peers()) == 0 && len(b.Peers()) == 0 }, time.Second, 5*time.Millisecond,
		"sessions with the revoked device close within a second")
	t.Logf("revocation closed the sessions in %v", time.Since(start))
	require.NoError(t, a.Put(ctx, "notes", "after", []byte("2")))
	require.Error(t, b.Connect(ctx, a.Addr(), a.DeviceID()), "the revoked device is refused on reconnect")
	time.Sleep(200 * time.Millisecond)
	_, err := b.Get(ctx, "notes", "after")
	require.ErrorIs(t, err, federation.ErrNotFound, "nothing written after revocation reaches the revoked device")
	a.TrustDevice(b.PublicKey())
	devs, err := a.Devices(ctx)
	require.NoError(t, err)
	require.Equal(t, federation.TrustRevoked, devs[0].Trust, "revocation is terminal")
}

// TestDeviceTypeReachesOtherDevices: Config.Device.Type is recorded in the
// registry and every device of the mesh sees it (it was dropped at
// pairing: every device was "unknown" to the others).
func TestDeviceTypeReachesOtherDevices(t *testing.T) {
	ctx := context.Background()
	phone, laptop, tablet := quicNode(t, "phone"), quicNode(t, "laptop"), quicNode(t, "tablet")
	pairInto(t, phone, laptop)
	pairInto(t, phone, tablet)
	want := map[federation.DeviceID]registry.DeviceType{
		phone.DeviceID(): registry.TypePhone, laptop.DeviceID(): registry.TypeLaptop, tablet.DeviceID(): registry.TypeTablet,
	}
	for _, n := range []*federation.Node{phone, laptop, tablet} {
		require.Eventually(t, func() bool {
			ds, err := n.Devices(ctx)
			require.NoError(t, err)
			got := map[federation.DeviceID]registry.DeviceType{}
			for _, d := range ds {
				got[d.ID] = d.Type
			}
			return reflect.DeepEqual(got, want)
		}, 10*time.Second, 10*time.Millisecond, "device types as seen by %s", n.DeviceID().Short())
	}

	// Roots shows the host's collections only; the registry's root is
	// there for whoever asks for it by name.
	require.NoError(t, phone.Put(ctx, "notes", "n", []byte("v")))
	require.Equal(t, []string{"notes"}, slices.Sorted(maps.Keys(phone.Roots())))
	require.NotEqual(t, phone.Root("no-such-collection"), phone.Root("_fed.registry"))

	// A type the registry does not know is recorded as unknown.
	toaster, err := federation.New(federation.Config{Dir: t.TempDir(), Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"},
		Device: federation.DeviceConfig{Type: "toaster"}})
	require.NoError(t, err)
	defer toaster.Close()
	require.NoError(t, toaster.Start(ctx))
	_, err = toaster.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) { return false, nil }})
	require.NoError(t, err) // founds its mesh: its own registry entry
	ds, err := toaster.Devices(ctx)
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, registry.TypeUnknown, ds[0].Type)
}
