package engine

import (
	"sync"
	"sync/atomic"
)

// Hub fans events out to subscriptions (federation.Node.Subscribe). A slow
// subscriber never blocks the publisher: when its buffer is full, events
// are dropped and counted.
type Hub[E any] struct {
	mu      sync.RWMutex
	buffer  int
	subs    map[*Sub[E]]struct{}
	closed  bool
	dropped atomic.Uint64
}

// Sub is one subscription: it receives events on C until Close or until
// the hub closes, after which C is closed.
type Sub[E any] struct {
	// C delivers events in publishing order.
	C <-chan E

	c       chan E
	hub     *Hub[E]
	filter  map[string]bool
	dropped atomic.Uint64
	once    sync.Once
}

// Dropped returns how many events this subscription lost to a full buffer.
func (s *Sub[E]) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. Idempotent.
func (s *Sub[E]) Close() { s.hub.remove(s) }

// NewHub returns a hub whose subscriptions buffer that many events.
func NewHub[E any](buffer int) *Hub[E] {
	return &Hub[E]{buffer: buffer, subs: map[*Sub[E]]struct{}{}}
}

// Add starts a subscription to the events of collections (none: all). On
// a closed hub, its channel is already closed.
func (h *Hub[E]) Add(collections []string) *Sub[E] {
	c := make(chan E, h.buffer)
	s := &Sub[E]{C: c, c: c, hub: h}
	if len(collections) > 0 {
		s.filter = map[string]bool{}
		for _, name := range collections {
			s.filter[name] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.once.Do(func() { close(c) })
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *Hub[E]) remove(s *Sub[E]) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.once.Do(func() { close(s.c) })
}

// Publish hands e, an event of collection, to every subscription that
// wants it.
func (h *Hub[E]) Publish(collection string, e E) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		if s.filter != nil && !s.filter[collection] {
			continue
		}
		select {
		case s.c <- e:
		default:
			s.dropped.Add(1)
			h.dropped.Add(1)
		}
	}
}

// Counts returns the number of subscriptions and of events dropped.
func (h *Hub[E]) Counts() (subscribers int, dropped uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs), h.dropped.Load()
}

// Close closes every subscription and refuses new ones.
func (h *Hub[E]) Close() {
	h.mu.Lock()
	subs := h.subs
	h.subs = map[*Sub[E]]struct{}{}
	h.closed = true
	h.mu.Unlock()
	for s := range subs {
		s.once.Do(func() { close(s.c) })
	}
}
