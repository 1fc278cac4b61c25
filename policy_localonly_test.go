package federation_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// marker returns a unique, random byte string to search the wire for.
func marker(t *testing.T, kind string) string {
	t.Helper()
	b := make([]byte, 12)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return kind + "-" + hex.EncodeToString(b)
}

// TestCacheBytesNeverCrossAnyTransport: three devices pair (pairing
// streams recorded too) and sync for a while, writing cache records with
// unique markers in their keys and values before pairing, alone and in
// the same transactions as synced records, and deleting some; every byte
// that crossed every stream of every session, both ways, is then
// searched: no cache marker is anywhere, while every synced marker is
// (the recording sees the plaintext frames). Over the in-memory transport
// and over QUIC on loopback with libSQL files.
func TestCacheBytesNeverCrossAnyTransport(t *testing.T) {
	for _, kind := range []struct {
		name string
		node func(t *testing.T, name string, tp *tap) *federation.Node
	}{
		{"mem", func() func(t *testing.T, name string, tp *tap) *federation.Node {
			net := transport.NewMemNetwork()
			return func(t *testing.T, name string, tp *tap) *federation.Node {
				n := newNode(t, memstore.New(), func(c *federation.Config) {
					c.Device = federation.DeviceConfig{Name: name, Type: name}
					c.Network.Transport = tp.wrap(memFactory(net))
				})
				require.NoError(t, n.Start(context.Background()))
				return n
			}
		}()},
		{"quic-libsql", func(t *testing.T, name string, tp *tap) *federation.Node {
			quic := func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
				return transport.NewQUIC(ctx, transport.QUICConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, ListenAddr: "127.0.0.1:0", Logger: p.Logger})
			}
			return quicNode(t, name, func(c *federation.Config) { c.Network.Transport = tp.wrap(quic) })
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			tp := &tap{}
			phone, laptop, tablet := kind.node(t, "phone", tp), kind.node(t, "laptop", tp), kind.node(t, "tablet", tp)
			nodes := []*federation.Node{phone, laptop, tablet}
			var secret, synced []string
			put := func(n *federation.Node, coll string) {
				k, v := marker(t, "key"), marker(t, "value")
				require.NoError(t, n.Put(ctx, coll, k, []byte(v)))
				if coll == federation.CollectionCache {
					secret = append(secret, k, v)
				} else {
					synced = append(synced, k, v)
				}
			}
			put(phone, federation.CollectionCache) // before pairing
			put(phone, "notes")
			pairInto(t, phone, laptop)
			pairInto(t, phone, tablet)
			require.Eventually(t, func() bool { return trusts(ctx, laptop, tablet.DeviceID(), federation.TrustTrusted) }, 10*time.Second, 5*time.Millisecond)

			for round := range 20 {
				for i, n := range nodes {
					put(n, federation.CollectionCache)
					// Cache and synced records in one transaction.
					ck, cv, nk, nv := marker(t, "key"), marker(t, "value"), marker(t, "key"), marker(t, "value")
					require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error {
						if err := tx.Put(federation.CollectionCache, ck, []byte(cv)); err != nil {
							return err
						}
						return tx.Put("notes", nk, []byte(nv))
					}))
					secret, synced = append(secret, ck, cv), append(synced, nk, nv)
					if round%5 == i {
						require.NoError(t, n.Delete(ctx, federation.CollectionCache, ck))
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			last := synced[len(synced)-1]
			for _, n := range nodes {
				waitValue(t, n, "notes", synced[len(synced)-2], last)
			}
			time.Sleep(200 * time.Millisecond) // the last Acks and CaughtUps

			require.GreaterOrEqual(t, tp.sessions(), 4, "pairing and sync sessions went through the tap")
			t.Logf("%d sessions, %d bytes recorded", tp.sessions(), tp.total())
			for _, s := range synced {
				require.True(t, tp.contains([]byte(s)), "a synced marker is not in the recording: it does not see what travels")
			}
			for _, s := range secret {
				require.False(t, tp.contains([]byte(s)), "cache bytes crossed a transport: %s", s)
			}
			// And the cache stayed where it was written.
			for i, n := range nodes {
				count := 0
				require.NoError(t, n.Scan(ctx, federation.CollectionCache, federation.KeyRange{}, func(federation.Record) error { count++; return nil }))
				require.NotZero(t, count, "node %d's own cache", i)
				require.Less(t, count, len(secret)/2/2, fmt.Sprintf("node %d holds another device's cache", i))
			}
		})
	}
}
