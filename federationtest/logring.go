package federationtest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// logRing keeps the last lines a mesh's nodes logged, so that a test that
// fails (a seed that does not converge) can show what the nodes said just
// before, without printing every line of every passing run.
type logRing struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newLogRing(size int) *logRing { return &logRing{lines: make([]string, size)} }

func (r *logRing) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = s
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
}

// String returns the kept lines, oldest first.
func (r *logRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if r.full {
		out = append(out, r.lines[r.next:]...)
	}
	out = append(out, r.lines[:r.next]...)
	return strings.Join(out, "")
}

// ringHandler is a slog.Handler writing text lines into a logRing.
type ringHandler struct {
	ring *logRing
	mu   *sync.Mutex
	buf  *bytes.Buffer
	h    slog.Handler
}

func newRingHandler(ring *logRing, prefix string, level slog.Level) slog.Handler {
	buf := &bytes.Buffer{}
	h := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})
	return &ringHandler{ring: ring, mu: &sync.Mutex{}, buf: buf, h: h.WithAttrs([]slog.Attr{slog.String("node", prefix)})}
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.h.Handle(ctx, r); err != nil {
		return err
	}
	h.ring.add(h.buf.String())
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ringHandler{ring: h.ring, mu: h.mu, buf: h.buf, h: h.h.WithAttrs(as)}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	return &ringHandler{ring: h.ring, mu: h.mu, buf: h.buf, h: h.h.WithGroup(name)}
}

// Diagnose describes the mesh for a failure report: each node's version
// vector and sessions, and the last lines the nodes logged (Options.LogRing).
func (m *Mesh) Diagnose(ctx context.Context) string {
	var b strings.Builder
	for i := range m.nodes {
		n := m.Node(i)
		if n == nil {
			continue
		}
		vv, _ := m.Store(i).VersionVector(ctx)
		fmt.Fprintf(&b, "node %d %s replica %s vv %v\n", i, n.DeviceID().Short(), n.Replica().Short(), vv)
		for _, p := range n.Peers() {
			fmt.Fprintf(&b, "  session %s caughtUp %v acked %v sent %d recv %d frames %d/%d repairs %d\n",
				p.Device.Short(), p.CaughtUp, p.Acked, p.ChangesSent, p.ChangesRecv, p.FramesSent, p.FramesRecv, p.Repairs)
		}
	}
	m.mu.Lock()
	fmt.Fprintf(&b, "partition groups %v faults on %v\n", m.group, m.faultsOn)
	m.mu.Unlock()
	if m.ring != nil {
		b.WriteString("last log lines:\n")
		b.WriteString(m.ring.String())
	}
	return b.String()
}
