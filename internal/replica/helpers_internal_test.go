package replica

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
)

// harness is a Replica on an in-memory store, with what it audits and
// publishes captured.
type harness struct {
	rep   *Replica
	store *memstore.Store
	clock *core.ManualClock

	mu      sync.Mutex
	entries []audit.Entry
	events  []Event
}

var (
	testDevice = core.DeviceID{1}
	peerA      = core.DeviceID{0xa}
	peerB      = core.DeviceID{0xb}
)

// newHarness builds a replica on a fresh memstore; cfg's Store, Device,
// HLC, Clock, Audit and Publish are filled in when unset.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{store: memstore.New(), clock: core.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	if cfg.Store == nil {
		cfg.Store = h.store
	}
	if cfg.Device.IsZero() {
		cfg.Device = testDevice
		cfg.Created = true
	}
	if cfg.Clock == nil {
		cfg.Clock = h.clock
	}
	if cfg.HLC == nil {
		cfg.HLC = core.NewHLC(cfg.Clock, time.Minute)
	}
	if cfg.Audit == nil {
		cfg.Audit = func(_ context.Context, e audit.Entry) {
			h.mu.Lock()
			h.entries = append(h.entries, e)
			h.mu.Unlock()
		}
	}
	if cfg.Publish == nil {
		cfg.Publish = func(e Event) {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		}
	}
	rep, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.rep = rep
	t.Cleanup(func() { _ = h.store.Close() })
	return h
}

// audited returns the captured audit entries of kind.
func (h *harness) audited(kind audit.Kind) []audit.Entry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []audit.Entry
	for _, e := range h.entries {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// published returns the captured events of kind.
func (h *harness) published(kind EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// change builds a single-change transaction of origin at seq, whose causal
// context is ctx plus its own dot.
func change(origin core.DeviceID, seq uint64, ts core.Timestamp, coll, key, value string, ctx core.VersionVector) core.Change {
	c := ctx.Clone()
	if c == nil {
		c = core.VersionVector{}
	}
	c[origin] = seq
	return core.Change{Record: core.Record{Collection: coll, Key: key, Value: []byte(value), Timestamp: ts,
		Origin: origin, Seq: seq, Context: c}, TxnFirst: seq, TxnLen: 1}
}
