package transport

import (
	"runtime"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// Close ends every session, unblocks every stream and stops every goroutine
// the transports started; later calls fail with core.ErrClosed.
func TestCloseReleasesEverything(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			a, b := newIdentity(t), newIdentity(t)
			server := k.listen(t, b, NewAllowList(a.PublicKey()), versionRange{}, Limits{})
			client := k.listen(t, a, NewAllowList(b.PublicKey()), versionRange{}, Limits{})
			ctx := ctxT(t, 5*time.Second)
			cs, err := client.Dial(ctx, server.Addr(), b.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			ss, err := server.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			st, err := cs.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			readErr := make(chan error, 1)
			go func() { // blocked until Close: the peer never writes
				_, err := st.Read(make([]byte, 1))
				readErr <- err
			}()
			_ = server.Close()
			_ = client.Close()
			_ = server.Close() // idempotent
			select {
			case err := <-readErr:
				if err == nil {
					t.Fatal("read on a closed session succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read still blocked after Close")
			}
			for _, s := range []core.Session{cs, ss} {
				select {
				case <-s.Done():
				default:
					t.Fatal("session still live after Close")
				}
			}
			if _, err := server.Accept(ctx); err == nil {
				t.Fatal("Accept after Close succeeded")
			}
			_, err = client.Dial(ctx, server.Addr(), b.DeviceID())
			mustErr(t, err, core.ErrClosed, "Dial after Close")
			waitGoroutines(t, before)
		})
	}
}

// waitGoroutines waits for the goroutine count to fall back to n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
