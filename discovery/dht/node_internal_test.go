package dht

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/discovery/dht/dhttest"
	"github.com/devicemesh/federation/registry"
)

// TestNodePutGetNewest checks the node wrapper against a loopback DHT: a
// value put by one node is read by another, a second put replaces it (the
// sequence number rises past what the DHT holds), and a key nothing was
// put under reads as errNotFound.
func TestNodePutGetNewest(t *testing.T) {
	nw := dhttest.Start(t, 6)
	a, err := startNode("127.0.0.1:0", nw.Bootstrap(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	b, err := startNode("127.0.0.1:0", nw.Bootstrap(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	for _, v := range [][]byte{[]byte("first"), []byte("second")} {
		if err := a.put(ctx, key, v); err != nil {
			t.Fatalf("put %q: %v", v, err)
		}
		got, err := b.get(ctx, key.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatalf("get after put %q: %v", v, err)
		}
		if !bytes.Equal(got, v) {
			t.Fatalf("got %q, want %q", got, v)
		}
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	if _, err := b.get(ctx, other.Public().(ed25519.PublicKey)); !errors.Is(err, errNotFound) {
		t.Fatalf("get of an unused key: %v, want errNotFound", err)
	}
	// A fresh node (no memory of past sequence numbers) still replaces the
	// value: it starts above the highest sequence number the DHT holds.
	c, err := startNode("127.0.0.1:0", nw.Bootstrap(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.put(ctx, key, []byte("third")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.get(ctx, key.Public().(ed25519.PublicKey)); err != nil || string(got) != "third" {
		t.Fatalf("after a put by a fresh node: %q, %v; want third", got, err)
	}
}

// TestNodeNeedsBootstrap checks that a node without bootstrap nodes does
// not join (and never falls back on the public routers).
func TestNodeNeedsBootstrap(t *testing.T) {
	n, err := startNode("127.0.0.1:0", nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.join(ctx); !errors.Is(err, ErrNoBootstrap) {
		t.Fatalf("join without bootstrap: %v, want ErrNoBootstrap", err)
	}
}

// TestNewNeedsBootstrap checks that a Discoverer cannot be built without
// bootstrap nodes: there is no default, public or otherwise.
func TestNewNeedsBootstrap(t *testing.T) {
	if _, err := New(Config{Mesh: nil}); err == nil {
		t.Fatal("New without Mesh succeeded")
	}
	_, err := New(Config{Mesh: nilMesh{}, Devices: func() []core.DeviceID { return nil }})
	if !errors.Is(err, ErrNoBootstrap) {
		t.Fatalf("New without bootstrap nodes: %v, want ErrNoBootstrap", err)
	}
}

// nilMesh is a discovery.Mesh with nothing in it.
type nilMesh struct{}

func (nilMesh) DeviceID() core.DeviceID                         { return core.DeviceID{} }
func (nilMesh) PublicKey() core.PublicKey                       { return core.PublicKey{} }
func (nilMesh) Sign([]byte) []byte                              { return nil }
func (nilMesh) Secret() (registry.Secret, error)                { return registry.Secret{}, discovery.ErrNoSecret }
func (nilMesh) TrustedKey(core.DeviceID) (core.PublicKey, bool) { return core.PublicKey{}, false }
func (nilMesh) Addrs() []string                                 { return nil }
