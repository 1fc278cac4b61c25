package federation_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/pairing"
)

// tap records every byte written to and read from every stream of every
// session of the transports it wraps (sync and pairing alike), one buffer
// per stream and direction, so that a test can search all that a node
// ever carried.
type tap struct {
	mu      sync.Mutex
	streams []*tappedStream
	sess    int
	live    []core.Session
}

// closeAll closes every session that went through the tap.
func (tp *tap) closeAll() {
	tp.mu.Lock()
	live := tp.live
	tp.live = nil
	tp.mu.Unlock()
	for _, s := range live {
		_ = s.Close(nil)
	}
}

// wrap returns a factory building base's transport behind the tap.
func (tp *tap) wrap(base federation.TransportFactory) federation.TransportFactory {
	return func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		tr, err := base(ctx, p)
		if err != nil {
			return nil, err
		}
		return &tapTransport{Transport: tr, tp: tp}, nil
	}
}

// sessions returns how many sessions went through the tap.
func (tp *tap) sessions() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.sess
}

// all returns a copy of every stream's bytes, written then read.
func (tp *tap) all() [][]byte {
	tp.mu.Lock()
	streams := append([]*tappedStream(nil), tp.streams...)
	tp.mu.Unlock()
	var out [][]byte
	for _, s := range streams {
		s.mu.Lock()
		out = append(out, bytes.Clone(s.wrote.Bytes()), bytes.Clone(s.read.Bytes()))
		s.mu.Unlock()
	}
	return out
}

// total returns the bytes carried so far, both directions.
func (tp *tap) total() int {
	n := 0
	for _, b := range tp.all() {
		n += len(b)
	}
	return n
}

// contains reports whether any recorded byte sequence holds marker.
func (tp *tap) contains(marker []byte) bool {
	for _, b := range tp.all() {
		if bytes.Contains(b, marker) {
			return true
		}
	}
	return false
}

// syncFrame is one frame written on a sync stream.
type syncFrame struct {
	Type    wire.Type
	Payload []byte
}

// written returns the frames written on the streams whose bytes parse as
// frames from their first byte (the sync streams), in order per stream.
func (tp *tap) written(t *testing.T) [][]syncFrame {
	t.Helper()
	tp.mu.Lock()
	streams := append([]*tappedStream(nil), tp.streams...)
	tp.mu.Unlock()
	var out [][]syncFrame
	for _, s := range streams {
		s.mu.Lock()
		b := bytes.Clone(s.wrote.Bytes())
		s.mu.Unlock()
		var fs []syncFrame
		for len(b) >= wire.HeaderSize {
			typ, n, err := wire.DecodeHeader(b[:wire.HeaderSize], wire.MaxFrameSize)
			if err != nil || len(b) < wire.HeaderSize+n {
				break
			}
			fs = append(fs, syncFrame{typ, b[wire.HeaderSize : wire.HeaderSize+n]})
			b = b[wire.HeaderSize+n:]
		}
		out = append(out, fs)
	}
	return out
}

// changesOf returns the changes of collection in the Changes and Priority
// frames written, per frame that holds any.
func (tp *tap) changesOf(t *testing.T, collection string) [][]core.Change {
	t.Helper()
	var out [][]core.Change
	for _, fs := range tp.written(t) {
		for _, f := range fs {
			if f.Type != wire.TypeChanges && f.Type != wire.TypePriority {
				continue
			}
			cs, err := wire.DecodeChanges(f.Payload)
			require.NoError(t, err)
			var mine []core.Change
			for _, c := range cs {
				if c.Collection == collection {
					mine = append(mine, c)
				}
			}
			if len(mine) > 0 {
				out = append(out, mine)
			}
		}
	}
	return out
}

type tapTransport struct {
	federation.Transport
	tp *tap
}

func (t *tapTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	s, err := t.Transport.Dial(ctx, addr, peer)
	if err != nil {
		return nil, err
	}
	return t.tp.session(s), nil
}

func (t *tapTransport) Accept(ctx context.Context) (core.Session, error) {
	s, err := t.Transport.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return t.tp.session(s), nil
}

func (tp *tap) session(s core.Session) core.Session {
	tp.mu.Lock()
	tp.sess++
	tp.live = append(tp.live, s)
	tp.mu.Unlock()
	return &tapSession{Session: s, tp: tp}
}

type tapSession struct {
	core.Session
	tp *tap
}

func (s *tapSession) OpenStream(ctx context.Context) (core.Stream, error) {
	st, err := s.Session.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return s.tp.stream(st), nil
}

func (s *tapSession) AcceptStream(ctx context.Context) (core.Stream, error) {
	st, err := s.Session.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return s.tp.stream(st), nil
}

func (tp *tap) stream(st core.Stream) core.Stream {
	ts := &tappedStream{Stream: st}
	tp.mu.Lock()
	tp.streams = append(tp.streams, ts)
	tp.mu.Unlock()
	return ts
}

type tappedStream struct {
	core.Stream
	mu          sync.Mutex
	wrote, read bytes.Buffer
}

func (s *tappedStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	s.mu.Lock()
	s.wrote.Write(p[:n])
	s.mu.Unlock()
	return n, err
}

func (s *tappedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.mu.Lock()
	s.read.Write(p[:n])
	s.mu.Unlock()
	return n, err
}

// HandshakeHash forwards the session's channel binding (pairing needs it).
func (s *tapSession) HandshakeHash() []byte {
	if h, ok := s.Session.(pairing.Session); ok {
		return h.HandshakeHash()
	}
	return nil
}

// remoteAddrer is a session that knows the peer's address (as
// internal/peers asks).
type remoteAddrer interface{ RemoteAddr() string }

// RemoteAddr forwards the peer's address, when the transport knows it.
func (s *tapSession) RemoteAddr() string {
	if r, ok := s.Session.(remoteAddrer); ok {
		return r.RemoteAddr()
	}
	return ""
}
