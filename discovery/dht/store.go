package dht

import (
	"container/list"
	"sync"

	"github.com/anacrolix/dht/v2/bep44"
)

// maxStoredItems bounds the BEP 44 items this device's DHT node keeps for
// other participants (about a kilobyte each at most).
const maxStoredItems = 2048

// store is the BEP 44 storage of this device's DHT node. As a DHT
// participant the node keeps what others put near its id; the library's
// default store grows without bound (items leave only when read after
// their expiry), so this one keeps at most max items and forgets the
// least recently written first.
type store struct {
	mu    sync.Mutex
	max   int
	items map[bep44.Target]*list.Element // of *bep44.Item
	order *list.List                     // least recently written first
}

var _ bep44.Store = (*store)(nil)

func newStore(limit int) *store {
	return &store{max: limit, items: map[bep44.Target]*list.Element{}, order: list.New()}
}

// Put stores i under its target, evicting the least recently written item
// when full.
func (s *store) Put(i *bep44.Item) error {
	t := i.Target()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[t]; ok {
		e.Value = i
		s.order.MoveToBack(e)
		return nil
	}
	for s.order.Len() >= s.max {
		oldest := s.order.Front()
		delete(s.items, oldest.Value.(*bep44.Item).Target())
		s.order.Remove(oldest)
	}
	s.items[t] = s.order.PushBack(i)
	return nil
}

// Get returns the item stored under t, or bep44.ErrItemNotFound.
func (s *store) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return e.Value.(*bep44.Item), nil
}

// Del removes the item stored under t.
func (s *store) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[t]; ok {
		delete(s.items, t)
		s.order.Remove(e)
	}
	return nil
}

// len returns how many items are stored.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}
