package federation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
)

// within runs f on its own goroutine and fails the test if it has not
// returned after d (a deadlock), instead of hanging the whole run.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (deadlock)", what, d)
	}
}

// TestWriteInsideUpdateFailsInsteadOfHanging: a Node call that takes the
// write lock, made from inside an Update callback (with any context), once
// deadlocked, and Close then hung forever. It must fail at once with
// ErrReentrantWrite, leave the transaction usable, and let Close return.
func TestWriteInsideUpdateFailsInsteadOfHanging(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(n *federation.Node, ctx context.Context) error{
		"Put":    func(n *federation.Node, ctx context.Context) error { return n.Put(ctx, "notes", "inner", []byte("x")) },
		"Delete": func(n *federation.Node, ctx context.Context) error { return n.Delete(ctx, "notes", "outer") },
		"Update": func(n *federation.Node, ctx context.Context) error {
			return n.Update(ctx, func(tx *federation.Tx) error { return tx.Put("notes", "inner", nil) })
		},
		"Stats":     func(n *federation.Node, ctx context.Context) error { _, err := n.Stats(ctx); return err },
		"Conflicts": func(n *federation.Node, ctx context.Context) error { _, err := n.Conflicts(ctx); return err },
		"Resolve": func(n *federation.Node, ctx context.Context) error {
			return n.Resolve(ctx, "none", federation.Resolution{Value: []byte("v")})
		},
		"Close": func(n *federation.Node, _ context.Context) error { return n.Close() },
		"RevokeDevice": func(n *federation.Node, ctx context.Context) error {
			return n.RevokeDevice(ctx, federation.DeviceID{1})
		},
	}
	for name, call := range calls {
		for _, withTxCtx := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/txctx=%v", name, withTxCtx), func(t *testing.T) {
				n := newNode(t, memstore.New())
				var inner error
				within(t, 2*time.Second, "Update with a nested "+name, func() {
					err := n.Update(ctx, func(tx *federation.Tx) error {
						c := context.Background()
						if withTxCtx {
							c = tx.Context()
						}
						inner = call(n, c)
						return tx.Put("notes", "outer", []byte("kept"))
					})
					require.NoError(t, err)
				})
				require.ErrorIs(t, inner, federation.ErrReentrantWrite)
				// The outer transaction committed; the nested write did not.
				v, err := n.Get(ctx, "notes", "outer")
				require.NoError(t, err)
				require.Equal(t, "kept", string(v))
				_, err = n.Get(ctx, "notes", "inner")
				require.ErrorIs(t, err, federation.ErrNotFound)
				devs, err := n.Devices(ctx)
				require.NoError(t, err)
				for _, d := range devs {
					require.NotEqual(t, federation.TrustRevoked, d.Trust, "a refused RevokeDevice must have no effect")
				}
				within(t, 2*time.Second, "Close", func() { require.NoError(t, n.Close()) })
			})
		}
	}
}

// TestWriteWithTxContextFromHelperGoroutine: a goroutine the callback waits
// for, writing with the transaction's context, fails instead of
// deadlocking.
func TestWriteWithTxContextFromHelperGoroutine(t *testing.T) {
	n := newNode(t, memstore.New())
	var inner error
	within(t, 2*time.Second, "Update", func() {
		require.NoError(t, n.Update(context.Background(), func(tx *federation.Tx) error {
			done := make(chan struct{})
			go func() {
				defer close(done)
				inner = n.Put(tx.Context(), "notes", "k", []byte("v"))
			}()
			<-done
			return nil
		}))
	})
	require.ErrorIs(t, inner, federation.ErrReentrantWrite)
	// Once the transaction is over, its context no longer marks anything.
	var kept context.Context
	require.NoError(t, n.Update(context.Background(), func(tx *federation.Tx) error { kept = tx.Context(); return nil }))
	require.NoError(t, n.Put(kept, "notes", "k", []byte("v")))
}

// TestConcurrentWritersWaitForLongUpdate: writers on other goroutines are
// not re-entrant: during a long Update they wait and then succeed.
func TestConcurrentWritersWaitForLongUpdate(t *testing.T) {
	ctx := context.Background()
	n := newNode(t, memstore.New())
	started := make(chan struct{})
	var wg sync.WaitGroup
	var errs [8]error
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[0] = n.Update(ctx, func(tx *federation.Tx) error {
			close(started)
			time.Sleep(300 * time.Millisecond)
			return tx.Put("notes", "long", []byte("l"))
		})
	}()
	<-started
	for i := 1; i < len(errs); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, errs[i] = n.Stats(ctx)
				return
			}
			errs[i] = n.Put(ctx, "notes", fmt.Sprintf("k%d", i), []byte("v"))
		}()
	}
	within(t, 5*time.Second, "concurrent writers", wg.Wait)
	for i, err := range errs {
		require.NoError(t, err, "writer %d", i)
		require.False(t, errors.Is(err, federation.ErrReentrantWrite))
	}
	for i := 1; i < len(errs); i += 2 {
		_, err := n.Get(ctx, "notes", fmt.Sprintf("k%d", i))
		require.NoError(t, err)
	}
}
