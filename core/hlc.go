package core

import (
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: the high 48 bits are physical
// Unix milliseconds, the low 16 bits a logical counter. Timestamps compare
// as plain integers.
type Timestamp uint64

const counterBits = 16

// MakeTimestamp builds a timestamp from physical milliseconds and a counter.
func MakeTimestamp(ms int64, counter uint16) Timestamp {
	return Timestamp(uint64(ms)<<counterBits | uint64(counter))
}

// Millis returns the physical part in Unix milliseconds.
func (t Timestamp) Millis() int64 { return int64(uint64(t) >> counterBits) }

// Counter returns the logical part.
func (t Timestamp) Counter() uint16 { return uint16(t) }

// Time returns the physical part as a time.Time.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Millis()) }

// String formats the timestamp as RFC 3339 with milliseconds plus counter.
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().UTC().Format("2006-01-02T15:04:05.000Z"), t.Counter())
}

// Clock supplies physical time. Config accepts one so tests can skew or jump
// time; nil means the system clock.
type Clock interface {
	Now() time.Time
}

// SystemClock is the Clock backed by time.Now.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// HLC is a hybrid logical clock with bounded drift. Its readings are strictly
// increasing even when the physical clock jumps backwards, and stay close to
// physical time. It is safe for concurrent use.
type HLC struct {
	mu       sync.Mutex
	clock    Clock
	maxDrift time.Duration
	last     Timestamp
}

// NewHLC returns a clock reading physical time from clock (nil: system
// clock). Update refuses remote timestamps more than maxDrift ahead of the
// physical clock; maxDrift <= 0 means one minute.
func NewHLC(clock Clock, maxDrift time.Duration) *HLC {
	if clock == nil {
		clock = SystemClock{}
	}
	if maxDrift <= 0 {
		maxDrift = time.Minute
	}
	return &HLC{clock: clock, maxDrift: maxDrift}
}

// Now returns a timestamp greater than every timestamp this clock returned or
// observed before.
func (h *HLC) Now() (Timestamp, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.advance(h.clock.Now().UnixMilli())
}

// Update folds a remote timestamp into the clock so that later readings
// follow it. A remote timestamp more than the maximum drift ahead of the
// physical clock is refused with ErrClockDrift and leaves the clock as it was.
func (h *HLC) Update(remote Timestamp) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	phys := h.clock.Now().UnixMilli()
	if ahead := time.Duration(remote.Millis()-phys) * time.Millisecond; ahead > h.maxDrift {
		return fmt.Errorf("%w: %s ahead (limit %s)", ErrClockDrift, ahead, h.maxDrift)
	}
	if remote > h.last {
		h.last = remote
	}
	return nil
}

// Last returns the most recent reading or observation.
func (h *HLC) Last() Timestamp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Observe is Update without the drift check, for timestamps that were
// already validated (for example this device's own, reloaded at start).
func (h *HLC) Observe(t Timestamp) {
	h.mu.Lock()
	if t > h.last {
		h.last = t
	}
	h.mu.Unlock()
}

func (h *HLC) advance(phys int64) (Timestamp, error) {
	lastMs := h.last.Millis()
	if phys > lastMs {
		h.last = MakeTimestamp(phys, 0)
		return h.last, nil
	}
	if h.last.Counter() == 1<<counterBits-1 {
		// Borrow the next millisecond rather than fail: the clock stays
		// monotonic and drifts ahead by at most a millisecond per 65536
		// readings.
		h.last = MakeTimestamp(lastMs+1, 0)
		return h.last, nil
	}
	h.last++
	return h.last, nil
}
