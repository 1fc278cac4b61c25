package peers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
)

// DialDeadline bounds a dial, and how long a joiner waits for the inviter
// to record it.
const DialDeadline = 10 * time.Second

func (m *Manager) acceptLoop(ctx context.Context, tr core.Transport) {
	for {
		sess, err := tr.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, core.ErrClosed) {
				m.log.Warn("accept stopped", "err", err)
			}
			return
		}
		m.serve(ctx, sess, false)
	}
}

// serve runs the Handler on sess in a goroutine owned by the Manager.
func (m *Manager) serve(ctx context.Context, sess core.Session, outbound bool) {
	// Close marks the Manager closed before it waits for the group, under
	// mu: a session started after that is refused here rather than added to
	// a group already being waited for.
	peer := sess.Peer()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		_ = sess.Close(fmt.Errorf("node: %w", core.ErrClosed))
		return
	}
	if m.revoked[peer] {
		m.mu.Unlock()
		m.log.Info("refused a session with a revoked device", "peer", peer.Short())
		_ = sess.Close(errRevoked)
		return
	}
	l := &Link{m: m, sess: sess, peer: peer, outbound: outbound, relayed: isRelayed(sess)}
	m.links[l] = struct{}{}
	m.active[peer]++
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer m.drop(l)
		_ = m.cfg.Handler.Serve(ctx, l)
	}()
}

// drop forgets a link whose Handler returned.
func (m *Manager) drop(l *Link) {
	m.mu.Lock()
	delete(m.links, l)
	if l.member != nil { // the Handler did not Leave
		l.member = nil
		m.changedLocked()
	}
	m.mu.Unlock()
	m.release(l.peer)
}

// transport returns the transport and the run context, or ErrNotStarted.
func (m *Manager) transport() (core.Transport, context.Context, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, fmt.Errorf("node: %w", core.ErrClosed)
	}
	if m.tr == nil {
		return nil, nil, ErrNotStarted
	}
	return m.tr, m.runCtx, nil
}

// dial dials peer at addr within DialDeadline (on the Manager's clock).
func (m *Manager) dial(ctx context.Context, tr core.Transport, addr string, peer core.DeviceID) (core.Session, error) {
	return m.dialWithin(ctx, tr, addr, peer, DialDeadline)
}

// dialWithin dials peer at addr within deadline (on the Manager's clock).
func (m *Manager) dialWithin(ctx context.Context, tr core.Transport, addr string, peer core.DeviceID, deadline time.Duration) (core.Session, error) {
	dctx, cancel := context.WithCancelCause(ctx)
	t := m.sched.AfterFunc(deadline, func() {
		cancel(fmt.Errorf("dial %s: %w", addr, context.DeadlineExceeded))
	})
	defer t.Stop()
	defer cancel(nil)
	sess, err := tr.Dial(dctx, addr, peer)
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(dctx); cause != nil && errors.Is(cause, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
	}
	return sess, err
}

// Dial dials peer at addr within DialDeadline and returns the session
// without serving it (for the pairing ceremony). The caller closes it.
func (m *Manager) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	tr, _, err := m.transport()
	if err != nil {
		return nil, err
	}
	return m.dial(ctx, tr, addr, peer)
}

// Connect dials a device at addr and serves the session in the
// background. peer may be zero when the device at addr is not known in
// advance. The address book remembers addr, so the redial loop dials the
// device there whenever the session ends.
func (m *Manager) Connect(ctx context.Context, addr string, peer core.DeviceID) error {
	tr, runCtx, err := m.transport()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if !peer.IsZero() {
		if m.isRevoked(peer) {
			return fmt.Errorf("connect %s: %w", addr, errRevoked)
		}
		m.hold(peer) // no redial while this dial is in flight
		defer m.release(peer)
	}
	sess, err := tr.Dial(ctx, addr, peer)
	if err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	m.Learn(ctx, sess.Peer(), []string{addr})
	m.serve(runCtx, sess, true)
	return nil
}
