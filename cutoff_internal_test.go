package federation

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// gatedTransport hands out sessions whose Close waits for gate: a session
// that is slow to close (a QUIC close waiting on a congested path).
type gatedTransport struct {
	Transport
	gate <-chan struct{}
}

type gatedSession struct {
	core.Session
	gate <-chan struct{}
}

func (s gatedSession) Close(reason error) error {
	<-s.gate
	return s.Session.Close(reason)
}

func (g gatedTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (Session, error) {
	s, err := g.Transport.Dial(ctx, addr, peer)
	if err != nil {
		return nil, err
	}
	return gatedSession{s, g.gate}, nil
}

func (g gatedTransport) Accept(ctx context.Context) (Session, error) {
	s, err := g.Transport.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return gatedSession{s, g.gate}, nil
}

// memNode starts a node on net (its sessions gated by gate when non-nil).
func memNode(t *testing.T, net *transport.MemNetwork, gate <-chan struct{}) *Node {
	t.Helper()
	n, err := New(Config{Store: memstore.New(), Network: NetworkConfig{Transport: func(ctx context.Context, p TransportParams) (Transport, error) {
		tr, err := net.ListenConfig(transport.MemConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys})
		if err != nil || gate == nil {
			return tr, err
		}
		return gatedTransport{Transport: tr, gate: gate}, nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCutOffDoesNotWaitUnderWriteLock: a revocation that arrives with a
// peer's registry operations cuts the device off while the node holds its
// write lock (foldOps). Closing a session may take a while (here it waits
// for the test); the cut-off must not hold every writer of the node for
// that long. Before, cutOff closed each session itself, under the lock.
func TestCutOffDoesNotWaitUnderWriteLock(t *testing.T) {
	net := transport.NewMemNetwork()
	gate := make(chan struct{})
	a, b := memNode(t, net, gate), memNode(t, net, nil)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // before the nodes close
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	if err := a.Connect(context.Background(), b.Addr(), b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, a, b, 5*time.Second)

	done := make(chan int, 1)
	go func() {
		_ = a.c.Rep.Exclusive(context.Background(), "", func() error { // the write lock, as foldOps holds it
			done <- a.c.Peers.CutOff(b.DeviceID())
			return nil
		})
	}()
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("cutOff closed %d sessions, want 1", n)
		}
	case <-time.After(2 * time.Second):
		release()
		t.Fatal("cutOff waited for a session to close while holding the write lock")
	}
	// Writers go on while the session closes.
	if err := a.Put(context.Background(), "notes", "during", []byte("1")); err != nil {
		t.Fatal(err)
	}
	release()
	deadline := time.Now().Add(5 * time.Second)
	for sessionCount(a, b.DeviceID()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session with the cut-off device stayed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
