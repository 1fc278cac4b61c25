package federation_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
)

// countChanges drains s for d and returns the change events seen per key.
func countChanges(s *federation.Subscription, d time.Duration) map[string]int {
	got := map[string]int{}
	deadline := time.After(d)
	for {
		select {
		case e := <-s.C:
			if e.Kind == federation.EventChange {
				got[e.Collection+"/"+e.Key]++
			}
		case <-deadline:
			return got
		}
	}
}

// TestReconnectDeliversNoOldChanges: a change event is delivered once per
// version that changes what the host sees; reconnecting (a disconnect, a
// pause, a restart of the other side) re-delivers nothing already merged.
func TestReconnectDeliversNoOldChanges(t *testing.T) {
	ctx := context.Background()
	phone, laptop := quicNode(t, "phone"), quicNode(t, "laptop")
	pairInto(t, phone, laptop)
	sub := laptop.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()

	for i := range 50 {
		require.NoError(t, phone.Put(ctx, "notes", fmt.Sprintf("k%02d", i), []byte("v")))
	}
	// Concurrent writes of one key, merged on both sides.
	_, err := phone.PausePeer(ctx, laptop.DeviceID())
	require.NoError(t, err)
	require.NoError(t, phone.Profile("me").Set(ctx, "name", "Anna"))
	require.NoError(t, laptop.Profile("me").Set(ctx, "city", "Lyon"))
	require.NoError(t, phone.ResumePeer(ctx, laptop.DeviceID()))
	require.Eventually(t, func() bool {
		return phone.Root("profile") == laptop.Root("profile") && phone.Root("notes") == laptop.Root("notes")
	},
		10*time.Second, 10*time.Millisecond)
	first := countChanges(sub, 500*time.Millisecond)
	for i := range 50 {
		require.Equal(t, 1, first[fmt.Sprintf("notes/k%02d", i)], "k%02d", i)
	}
	require.GreaterOrEqual(t, first["profile/me"], 2, "the laptop's own write and the merge")

	for round := range 3 {
		_, err := laptop.DisconnectPeer(ctx, phone.DeviceID())
		require.NoError(t, err)
		require.Eventually(t, func() bool { return connectedTo(laptop, phone.DeviceID()) }, 10*time.Second, 10*time.Millisecond)
		_, err = phone.PausePeer(ctx, laptop.DeviceID())
		require.NoError(t, err)
		require.NoError(t, phone.ResumePeer(ctx, laptop.DeviceID()))
		require.Eventually(t, func() bool { return connectedTo(laptop, phone.DeviceID()) }, 10*time.Second, 10*time.Millisecond)
		again := countChanges(sub, time.Second)
		require.Empty(t, again, "round %d: reconnecting re-delivered merged versions as changes", round)
	}
}

// TestRestartDeliversNoOldChanges: a restarted device (either side) gets
// no change event for versions it held before the restart, and its peer
// none for versions it held either.
func TestRestartDeliversNoOldChanges(t *testing.T) {
	ctx := context.Background()
	open := func(dir, name string) *federation.Node {
		n, err := federation.New(federation.Config{Dir: dir, Device: federation.DeviceConfig{Name: name},
			Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
		require.NoError(t, err)
		require.NoError(t, n.Start(ctx))
		return n
	}
	pdir, ldir := t.TempDir(), t.TempDir()
	phone, laptop := open(pdir, "phone"), open(ldir, "laptop")
	defer func() { _ = laptop.Close() }()
	pairInto(t, phone, laptop)
	for i := range 30 {
		require.NoError(t, phone.Put(ctx, "notes", fmt.Sprintf("p%02d", i), []byte("v")))
		require.NoError(t, laptop.Put(ctx, "notes", fmt.Sprintf("l%02d", i), []byte("v")))
	}
	require.NoError(t, phone.Conversation("chat").Append(ctx, "m1", []byte("hi")))
	require.NoError(t, laptop.Conversation("chat").Append(ctx, "m2", []byte("hello")))
	require.Eventually(t, func() bool {
		return phone.Root("notes") == laptop.Root("notes") && phone.Root("conversations") == laptop.Root("conversations")
	},
		10*time.Second, 10*time.Millisecond)

	lsub := laptop.Subscribe(federation.SubscribeOptions{})
	defer lsub.Close()
	require.NoError(t, phone.Close())
	phone = open(pdir, "phone")
	defer func() { _ = phone.Close() }()
	psub := phone.Subscribe(federation.SubscribeOptions{})
	defer psub.Close()
	require.NoError(t, phone.Connect(ctx, laptop.Addr(), laptop.DeviceID()))
	require.Eventually(t, func() bool { return connectedTo(laptop, phone.DeviceID()) }, 10*time.Second, 10*time.Millisecond)
	require.Empty(t, countChanges(lsub, 1500*time.Millisecond), "the laptop got old versions again from the restarted phone")
	require.Empty(t, countChanges(psub, 10*time.Millisecond), "the restarted phone got old versions again")

	// Both sides still sync new writes, once.
	require.NoError(t, phone.Put(ctx, "notes", "new", []byte("v")))
	waitValue(t, laptop, "notes", "new", "v")
	require.Equal(t, map[string]int{"notes/new": 1}, countChanges(lsub, 500*time.Millisecond))
}
