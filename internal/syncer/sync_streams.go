package syncer

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/devicemesh/federation/core"
)

// StreamHandler serves the extra streams a peer opens on a session, beside
// the sync stream: media blobs, say. Each stream's first byte is a tag
// naming what it carries (OpenStream writes it); ServeStream gets the
// stream after it, runs in a goroutine of its own, and must return once
// ctx ends (the session's end). The session closes st afterwards.
type StreamHandler interface {
	ServeStream(ctx context.Context, peer core.DeviceID, tag byte, st core.Stream)
}

// OpenStream opens an extra stream to the peer, for the peer's
// StreamHandler under tag. It waits until the session's own sync stream
// is open, since the peer takes the first stream it accepts for that.
func (ps *Session) OpenStream(ctx context.Context, tag byte) (core.Stream, error) {
	select {
	case <-ps.opened:
	case <-ps.sess.Done():
		return nil, fmt.Errorf("open stream: %w", io.EOF)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	st, err := ps.sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := st.Write([]byte{tag}); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return st, nil
}

// acceptStreams hands the streams the peer opens after its sync stream to
// Config.Streams until the session ends; with no handler it accepts none.
// The returned function waits for the accept loop and every handler.
func (ps *Session) acceptStreams(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if ps.cfg.Streams == nil {
		return wg.Wait
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := ps.sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				// A peer that opens a stream and sends nothing is cut off
				// like a stalled frame.
				t := ps.sched.AfterFunc(ps.cfg.Limits.FrameTimeout, func() { _ = st.Close() })
				var tag [1]byte
				_, err := io.ReadFull(st, tag[:])
				t.Stop()
				if err == nil {
					ps.cfg.Streams.ServeStream(ctx, ps.peer, tag[0], st)
				}
			}()
		}
	}()
	return wg.Wait
}
