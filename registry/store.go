package registry

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
)

// Store keeps the device registry table: the State's devices plus the local
// last-seen times.
//
// Implementations are safe for concurrent use. Devices passed in and
// returned are copies. Revocation is terminal here too: Put never turns a
// revoked record back into a live one.
type Store interface {
	// Put inserts or replaces d's record. LastSeen keeps the later of the
	// stored and the given time.
	Put(ctx context.Context, d Device) error
	// Get returns id's record, or an error wrapping core.ErrNotFound.
	Get(ctx context.Context, id core.DeviceID) (Device, error)
	// List returns every record, sorted by id.
	List(ctx context.Context) ([]Device, error)
	// Touch records that id was seen at t (ignored when not later than the
	// stored time); an unknown id yields core.ErrNotFound.
	Touch(ctx context.Context, id core.DeviceID, t time.Time) error
}

// Save writes every device of s to st, so that the table (and the
// Authorizer reading it) reflects the replicated registry.
func Save(ctx context.Context, st Store, s *State) error {
	for _, d := range s.Devices() {
		if err := st.Put(ctx, d); err != nil {
			return fmt.Errorf("save registry: %w", err)
		}
	}
	return nil
}

// merge returns the record Put stores when d replaces old.
func merge(old *Device, d Device) Device {
	d.Policy = bytes.Clone(d.Policy)
	if len(d.Policy) == 0 {
		d.Policy = nil // as the SQL store reads back an empty policy
	}
	d.LastSeen = d.LastSeen.UTC().Truncate(time.Millisecond)
	if old == nil {
		return d
	}
	if old.LastSeen.After(d.LastSeen) {
		d.LastSeen = old.LastSeen
	}
	if old.Trust == TrustRevoked && d.Trust != TrustRevoked {
		d.Trust, d.RevokedAt = TrustRevoked, old.RevokedAt
	}
	return d
}

// Memory is the in-memory Store.
type Memory struct {
	mu      sync.RWMutex
	devices map[core.DeviceID]Device
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory registry table.
func NewMemory() *Memory { return &Memory{devices: map[core.DeviceID]Device{}} }

// Put implements Store.
func (m *Memory) Put(ctx context.Context, d Device) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var old *Device
	if o, ok := m.devices[d.ID]; ok {
		old = &o
	}
	m.devices[d.ID] = merge(old, d)
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, id core.DeviceID) (Device, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.devices[id]
	if !ok {
		return Device{}, fmt.Errorf("device %s: %w", id.Short(), core.ErrNotFound)
	}
	return cloneDevice(d), nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context) ([]Device, error) {
	m.mu.RLock()
	out := make([]Device, 0, len(m.devices))
	for _, d := range m.devices {
		out = append(out, cloneDevice(d))
	}
	m.mu.RUnlock()
	sortDevices(out)
	return out, nil
}

// Touch implements Store.
func (m *Memory) Touch(ctx context.Context, id core.DeviceID, t time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[id]
	if !ok {
		return fmt.Errorf("touch device %s: %w", id.Short(), core.ErrNotFound)
	}
	if t = t.UTC().Truncate(time.Millisecond); t.After(d.LastSeen) {
		d.LastSeen = t
		m.devices[id] = d
	}
	return nil
}

func sortDevices(ds []Device) {
	slices.SortFunc(ds, func(a, b Device) int { return a.ID.Compare(b.ID) })
}
