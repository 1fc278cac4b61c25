package federation_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// TestInterruptedSyncResumes: the receiver is shut down in the middle of a
// first sync; once back it resumes where it stopped: the second session
// carries less than half of the data again, and nothing is missing.
func TestInterruptedSyncResumes(t *testing.T) {
	ctx := context.Background()
	const total, perTxn = 20000, 200
	value := make([]byte, 1024)
	a := quicNode(t, "a")
	for i := 0; i < total; i += perTxn {
		require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
			for j := i; j < i+perTxn; j++ {
				if err := tx.Put("bulk", fmt.Sprintf("k%06d", j), value); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	dir := t.TempDir()
	open := func() *federation.Node {
		n, err := federation.New(federation.Config{Dir: dir, Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
		require.NoError(t, err)
		require.NoError(t, n.Start(ctx))
		return n
	}
	b := open()
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, b.Connect(ctx, a.Addr(), a.DeviceID()))
	held := func(n *federation.Node) uint64 {
		st, err := n.Stats(ctx)
		require.NoError(t, err)
		return st.VersionVector[a.DeviceID()]
	}
	require.Eventually(t, func() bool { return held(b) >= total*3/5 }, 30*time.Second, time.Millisecond)
	require.NoError(t, b.Close()) // the receiver goes away mid-stream
	stopped := reopenStats(t, dir)
	before := held(stopped)
	require.NoError(t, stopped.Close()) // one node at a time on a Dir
	require.Less(t, before, uint64(total), "the interruption must come before the end")
	t.Logf("receiver held %d of %d changes when it stopped", before, total)

	b = open()
	defer b.Close()
	require.NoError(t, b.Connect(ctx, a.Addr(), a.DeviceID()))
	require.Eventually(t, func() bool { return held(b) == total }, 60*time.Second, 5*time.Millisecond)
	var again uint64
	for _, p := range b.Peers() {
		again += p.ChangesRecv
	}
	t.Logf("after restart the receiver got %d changes again (%d were missing)", again, uint64(total)-before)
	require.Less(t, again, uint64(total/2), "a resumed sync transfers less than half the data again")
	require.Equal(t, uint64(total)-before, again, "exactly what was missing is sent again, nothing it already held")
	require.Equal(t, a.Root("bulk"), b.Root("bulk"))
}

// reopenStats opens a closed node's directory just to read its state.
func reopenStats(t *testing.T, dir string) *federation.Node {
	t.Helper()
	n, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestLargeTransactionNeverPartiallyVisible: a transaction of 100,000
// changes arrives in many frames, yet the receiver shows none of it or all
// of it, never a part.
func TestLargeTransactionNeverPartiallyVisible(t *testing.T) {
	ctx := context.Background()
	const n = 100000
	net := transport.NewMemNetwork()
	a := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	b := newNode(t, memstore.New(), func(c *federation.Config) { c.Network.Transport = memFactory(net) })
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	require.NoError(t, a.Update(ctx, func(tx *federation.Tx) error {
		for i := range n {
			if err := tx.Put("big", fmt.Sprintf("k%06d", i), []byte("0123456789abcdef0123456789abcdef")); err != nil {
				return err
			}
		}
		return nil
	}))
	var partial, samples atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			st, err := b.Stats(ctx)
			if err != nil {
				return
			}
			samples.Add(1)
			if st.Store.Records != 0 && st.Store.Records != n {
				partial.Add(1)
			}
		}
	}()
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.Eventually(t, func() bool {
		st, err := b.Stats(ctx)
		return err == nil && st.Store.Records == n
	}, 60*time.Second, time.Millisecond)
	close(stop)
	<-done
	var frames uint64
	for _, p := range b.Peers() {
		frames += p.FramesRecv
	}
	t.Logf("%d samples of the receiver during the transfer, %d frames received", samples.Load(), frames)
	require.Zero(t, partial.Load(), "the transaction was partially visible")
	require.Greater(t, samples.Load(), int64(1), "the receiver was observed during the transfer")
	require.Greater(t, frames, uint64(2), "the transaction travelled in several frames")
}
