package federation_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// skewedClock is the system clock shifted by a fixed offset.
type skewedClock struct{ off time.Duration }

func (c skewedClock) Now() time.Time { return time.Now().Add(c.off) }

// sessionLog wraps a transport factory and keeps every session the
// transport hands out, dialled or accepted.
type sessionLog struct {
	mu       sync.Mutex
	sessions []federation.Session
}

func (l *sessionLog) add(s federation.Session) {
	l.mu.Lock()
	l.sessions = append(l.sessions, s)
	l.mu.Unlock()
}

// counts returns how many sessions were made and how many have ended.
func (l *sessionLog) counts() (made, ended int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sessions {
		select {
		case <-s.Done():
			ended++
		default:
		}
	}
	return len(l.sessions), ended
}

type loggedTransport struct {
	federation.Transport
	log *sessionLog
}

func (t loggedTransport) Dial(ctx context.Context, addr string, peer federation.DeviceID) (federation.Session, error) {
	s, err := t.Transport.Dial(ctx, addr, peer)
	if err == nil {
		t.log.add(s)
	}
	return s, err
}

func (t loggedTransport) Accept(ctx context.Context) (federation.Session, error) {
	s, err := t.Transport.Accept(ctx)
	if err == nil {
		t.log.add(s)
	}
	return s, err
}

func loggedFactory(f federation.TransportFactory, log *sessionLog) federation.TransportFactory {
	return func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		tr, err := f(ctx, p)
		if err != nil {
			return nil, err
		}
		return loggedTransport{Transport: tr, log: log}, nil
	}
}

// TestClockSkewConverges: one device's clock is 24 h behind (or ahead of)
// the other's. Far-future protection must not stop it from converging:
// every write of both devices, including a large transaction streamed
// while the peer's changes arrive, ends up on both; the one session is
// never torn down; and the device that sees the far-future timestamps
// reports them (event and Stats counter). Before the fix the receiving
// side refused the first far-future batch with ErrClockDrift and closed
// the session, cutting the other side's transaction off mid-stream.
func TestClockSkewConverges(t *testing.T) {
	for _, skew := range []time.Duration{-24 * time.Hour, 24 * time.Hour} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) { testClockSkew(t, skew) })
	}
}

func testClockSkew(t *testing.T, skew time.Duration) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	var logA, logB sessionLog
	a := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.Transport = loggedFactory(memFactory(net), &logA)
	})
	b := newNode(t, memstore.New(), func(c *federation.Config) {
		c.Network.Transport = loggedFactory(memFactory(net), &logB)
		c.Clock = skewedClock{off: skew}
	})
	a.TrustDevice(b.PublicKey())
	b.TrustDevice(a.PublicKey())
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	// sees receives timestamps from the future, from the device ahead.
	ahead, sees := b, a
	if skew < 0 {
		ahead, sees = a, b
	}

	const small, large = 200, 6000
	write := func(n *federation.Node, prefix string) {
		for i := range small {
			require.NoError(t, n.Put(ctx, "notes", fmt.Sprintf("%s-%03d", prefix, i), []byte(prefix)))
		}
		// The same key on both: a concurrent write settled by LWW.
		require.NoError(t, n.Put(ctx, "notes", "shared", []byte(prefix)))
		require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error {
			for i := range large {
				if err := tx.Put("bulk", fmt.Sprintf("%s-%05d", prefix, i), make([]byte, 200)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	write(a, "a")
	write(b, "b")
	sub := sees.Subscribe(federation.SubscribeOptions{})
	defer sub.Close()
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))

	// Both keep writing once connected.
	require.NoError(t, a.Put(ctx, "notes", "a-live", []byte("a")))
	require.NoError(t, b.Put(ctx, "notes", "b-live", []byte("b")))
	converged := func() bool {
		sa, err1 := a.Stats(ctx)
		sb, err2 := b.Stats(ctx)
		return err1 == nil && err2 == nil && len(sa.VersionVector) == 2 &&
			sa.VersionVector.Compare(sb.VersionVector) == 0 &&
			a.Root("notes") == b.Root("notes") && a.Root("bulk") == b.Root("bulk")
	}
	require.Eventually(t, converged, 30*time.Second, 20*time.Millisecond, "devices never converged")
	for _, n := range []*federation.Node{a, b} {
		for _, coll := range []string{"notes", "bulk"} {
			count := 0
			require.NoError(t, n.Scan(ctx, coll, federation.KeyRange{}, func(federation.Record) error { count++; return nil }))
			want := map[string]int{"notes": 2*small + 3, "bulk": 2 * large}[coll]
			require.Equal(t, want, count, "%s holds every write of both devices", coll)
		}
	}
	for name, l := range map[string]*sessionLog{"a": &logA, "b": &logB} {
		made, ended := l.counts()
		require.Equal(t, 1, made, "%s: sessions made", name)
		require.Equal(t, 0, ended, "%s: a session was torn down", name)
	}
	st, err := sees.Stats(ctx)
	require.NoError(t, err)
	require.NotZero(t, st.ClockDrift, "Stats.ClockDrift of the device seeing far-future timestamps")
	var seen atomic.Bool
	deadline := time.After(5 * time.Second)
	for !seen.Load() {
		select {
		case e := <-sub.C:
			if e.Kind == federation.EventClockDrift {
				require.Equal(t, ahead.DeviceID(), e.Origin)
				seen.Store(true)
			}
		case <-deadline:
			t.Fatal("no EventClockDrift")
		}
	}
	// The clock of the device that saw the future was not dragged there.
	now, err := sees.Now()
	require.NoError(t, err)
	require.Less(t, time.Until(now.Time()), 2*time.Minute+max(0, -skew), "clock dragged by the skewed peer")
}
