package federationtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/transport"
)

// factory builds node i's transport: the in-memory network, wrapped so that
// the mesh can partition it and inject faults.
func (m *Mesh) factory(i int) federation.TransportFactory {
	return func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		var tr core.Transport
		var err error
		if m.opts.QUIC {
			tr, err = transport.NewQUIC(ctx, transport.QUICConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, ListenAddr: "127.0.0.1:0", Logger: p.Logger})
		} else {
			tr, err = m.net.ListenConfig(transport.MemConfig{Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, Logger: p.Logger})
		}
		if err != nil {
			return nil, err
		}
		return &meshTransport{Transport: tr, m: m, self: i}, nil
	}
}

// meshTransport is one node's view of the mesh network (in memory, or
// QUIC on loopback).
type meshTransport struct {
	core.Transport
	m    *Mesh
	self int
}

// Dial refuses peers across a partition, then wraps the session.
func (t *meshTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	t.m.mu.Lock()
	j, ok := t.m.addrs[addr]
	t.m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("federationtest: no node at %s", addr)
	}
	if !t.m.reachable(t.self, j) {
		return nil, fmt.Errorf("federationtest: node %d cannot reach node %d: partitioned", t.self, j)
	}
	s, err := t.Transport.Dial(ctx, addr, peer)
	if err != nil {
		return nil, err
	}
	return t.m.wrap(s, t.self, j), nil
}

// Accept wraps inbound sessions and drops those across a partition.
func (t *meshTransport) Accept(ctx context.Context) (core.Session, error) {
	for {
		s, err := t.Transport.Accept(ctx)
		if err != nil {
			return nil, err
		}
		j := t.m.indexOf(s.Peer())
		if j < 0 || !t.m.reachable(t.self, j) {
			_ = s.Close(fmt.Errorf("federationtest: partitioned"))
			continue
		}
		return t.m.wrap(s, t.self, j), nil
	}
}

func (m *Mesh) indexOf(id core.DeviceID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, n := range m.nodes {
		if n != nil && n.DeviceID() == id {
			return i
		}
	}
	return -1
}

// link is a session between nodes a and b whose streams pass through the
// fault injector.
type link struct {
	core.Session
	m    *Mesh
	a, b int
}

func (m *Mesh) wrap(s core.Session, a, b int) *link {
	l := &link{Session: s, m: m, a: a, b: b}
	m.mu.Lock()
	m.links[l] = struct{}{}
	m.mu.Unlock()
	go func() {
		<-s.Done()
		m.mu.Lock()
		delete(m.links, l)
		m.mu.Unlock()
	}()
	return l
}

// OpenStream wraps the stream with the fault injector.
func (l *link) OpenStream(ctx context.Context) (core.Stream, error) {
	s, err := l.Session.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return &faultStream{Stream: s, m: l.m}, nil
}

// faultStream injects faults on writes. The sync protocol writes exactly
// one frame per Write, so each Write is one frame to drop, duplicate or
// hold back behind the next one.
type faultStream struct {
	core.Stream
	m    *Mesh
	mu   sync.Mutex
	held []byte
	tmr  *time.Timer
}

type fault int

const (
	deliver fault = iota
	drop
	duplicate
	reorder
)

func (m *Mesh) decide() fault {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.faultsOn {
		return deliver
	}
	f, x := m.opts.Faults, m.rng.Float64()
	switch {
	case x < f.Drop:
		m.injected.Dropped++
		return drop
	case x < f.Drop+f.Duplicate:
		m.injected.Duplicated++
		return duplicate
	case x < f.Drop+f.Duplicate+f.Reorder:
		m.injected.Reordered++
		return reorder
	}
	return deliver
}

func (s *faultStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.m.decide()
	if f == reorder && s.held == nil {
		// Hold this frame back until the next one has gone, or a moment.
		s.held = slices.Clone(p)
		s.tmr = time.AfterFunc(20*time.Millisecond, s.flushHeld)
		return len(p), nil
	}
	if f == drop {
		return len(p), nil
	}
	if _, err := s.Stream.Write(p); err != nil {
		return 0, err
	}
	if f == duplicate {
		if _, err := s.Stream.Write(p); err != nil {
			return 0, err
		}
	}
	if s.held != nil {
		s.tmr.Stop()
		held := s.held
		s.held = nil
		if _, err := s.Stream.Write(held); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (s *faultStream) flushHeld() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held != nil {
		_, _ = s.Stream.Write(s.held)
		s.held = nil
	}
}
