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
//
// The drift rule. Let phys be the local physical clock and maxDrift the
// bound given to NewHLC. A remote timestamp r is within bounds when
// r.Millis() <= phys + maxDrift. Timestamps of changes from trusted,
// authenticated devices are always accepted for storage and merge
// (Receive): refusing them would stop a device whose own clock is wrong
// from ever converging, and would strand its writes. What the bound
// protects is this device's clock: it follows a remote timestamp within
// bounds exactly (as a hybrid logical clock does), and one beyond only up to
// phys + maxDrift, so a peer whose clock runs far ahead can never drag this
// device's future timestamps (and its last-writer-wins standing) with it.
// Receive reports every timestamp beyond the bound so that the host can be
// told. Update is the strict variant that refuses such a timestamp with
// ErrClockDrift, for callers that must not accept it at all.
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

// Receive folds the timestamp of a change received from a trusted device
// into the clock, under the drift rule above: the clock follows remote up
// to the physical clock plus the maximum drift, never beyond. It returns how
// far remote lies beyond that bound (0 when within it); the caller still
// accepts the change.
func (h *HLC) Receive(remote Timestamp) (beyond time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	bound := h.clock.Now().UnixMilli() + h.maxDrift.Milliseconds()
	follow := remote
	if remote.Millis() > bound {
		beyond = time.Duration(remote.Millis()-bound) * time.Millisecond
		follow = MakeTimestamp(bound, 0)
	}
	if follow > h.last {
		h.last = follow
	}
	return beyond
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
