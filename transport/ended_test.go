package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/devicemesh/federation/core"
)

// laggingMux is a connection whose blocked accept learns of its own close
// before its done channel is closed, as a QUIC connection can: its accept
// fails with the rebuilt "closed locally" error, which names only the
// close code's sentinel, never the reason's own.
type laggingMux struct {
	closed chan struct{} // closed by close: accept returns
	doneC  chan struct{} // never closed during the test
}

func (m *laggingMux) open(ctx context.Context) (core.Stream, error) { return nil, m.wait(ctx) }
func (m *laggingMux) accept(ctx context.Context) (core.Stream, error) {
	return nil, m.wait(ctx)
}
func (m *laggingMux) wait(ctx context.Context) error {
	select {
	case <-m.closed:
		return fmt.Errorf("closed locally: %w: frame too large", core.ErrProtocol)
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (m *laggingMux) close(error)              { close(m.closed) }
func (m *laggingMux) done() <-chan struct{}    { return m.doneC }
func (m *laggingMux) context() context.Context { return context.Background() }
func (m *laggingMux) cause() error             { return nil }
func (m *laggingMux) remoteAddr() string       { return "" }

// TestLocalCloseReasonReachesBlockedAccept: a session closed for an
// oversized frame reports that reason (ErrFrameTooLarge) from a blocked
// AcceptStream or OpenStream even when the connection tells them of the
// close before the session counts as done (CI caught the reason lost).
func TestLocalCloseReasonReachesBlockedAccept(t *testing.T) {
	for _, op := range []string{"accept", "open"} {
		t.Run(op, func(t *testing.T) {
			m := &laggingMux{closed: make(chan struct{}), doneC: make(chan struct{})}
			s := &Session{m: m, log: slog.New(slog.DiscardHandler)}
			errc := make(chan error, 1)
			go func() {
				var err error
				if op == "accept" {
					_, err = s.AcceptStream(t.Context())
				} else {
					_, err = s.OpenStream(t.Context())
				}
				errc <- err
			}()
			_ = s.Close(fmt.Errorf("%w: 4 GiB", core.ErrFrameTooLarge))
			err := <-errc
			if !errors.Is(err, core.ErrFrameTooLarge) {
				t.Fatalf("%s after a local close for an oversized frame: %v; want ErrFrameTooLarge", op, err)
			}
		})
	}
}
