package core

import (
	"sync"
	"time"
)

// Timer is a pending call scheduled by a Scheduler.
type Timer interface {
	// Stop cancels the call; it reports whether the call was still
	// pending (false: it already ran or was stopped).
	Stop() bool
}

// Scheduler is a Clock that also runs the node's timers: heartbeats,
// redial and repair backoff, stall detection, periodic audit heads and
// batches. A host or test that supplies one in Config.Clock drives every
// periodic job of the node with it (see ManualClock). A Config.Clock that is
// only a Clock keeps its readings, and the node's timers run on real time
// (SystemScheduler).
type Scheduler interface {
	Clock
	// AfterFunc calls f in its own goroutine once d has passed on this
	// clock.
	AfterFunc(d time.Duration, f func()) Timer
}

// SystemScheduler runs timers on real time and reads its time from Clock
// (the system clock when nil).
type SystemScheduler struct {
	Clock Clock
}

// Now reads the wrapped clock.
func (s SystemScheduler) Now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

// AfterFunc schedules f on real time (time.AfterFunc).
func (SystemScheduler) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

// AfterFunc schedules f on real time (time.AfterFunc), so SystemClock is
// a Scheduler.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}

// SchedulerOf returns c as a Scheduler: c itself when it is one, otherwise
// c's readings with timers on real time. nil means the system clock.
func SchedulerOf(c Clock) Scheduler {
	if c == nil {
		return SystemClock{}
	}
	if s, ok := c.(Scheduler); ok {
		return s
	}
	return SystemScheduler{Clock: c}
}

// Wait returns a channel that receives the time once d has passed on s,
// and a function that releases the timer early.
func Wait(s Scheduler, d time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	t := s.AfterFunc(d, func() { ch <- s.Now() })
	return ch, func() { t.Stop() }
}

// ManualClock is a Scheduler whose time moves only when Advance or Set is
// called: tests use it to drive the node's periodic work step by step. It
// is safe for concurrent use. The zero value starts at the Unix epoch; use
// NewManualClock for another start.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

type manualTimer struct {
	c    *ManualClock
	at   time.Time
	f    func()
	done bool
}

func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// Now returns the clock's current reading.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f for when the clock has advanced by d (at once, in
// its own goroutine, when d <= 0).
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	t := &manualTimer{c: c, at: c.now.Add(d), f: f}
	due := d <= 0
	if due {
		t.done = true
	} else {
		c.timers = append(c.timers, t)
	}
	c.mu.Unlock()
	if due {
		go f()
	}
	return t
}

// Advance moves the clock forward by d and starts every timer that falls
// due, each in its own goroutine, in order of due time.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	c.fire()
}

// Set moves the clock to t (backwards too, as a wrong clock being
// corrected would) and starts every timer due by then.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
	c.fire()
}

// Pending returns the number of timers waiting.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done {
			n++
		}
	}
	return n
}

func (c *ManualClock) fire() {
	c.mu.Lock()
	var due []*manualTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.done:
		case !t.at.After(c.now):
			t.done = true
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	clear(c.timers[len(keep):])
	c.timers = keep
	c.mu.Unlock()
	for i := 1; i < len(due); i++ { // insertion sort by due time: few timers
		for j := i; j > 0 && due[j].at.Before(due[j-1].at); j-- {
			due[j], due[j-1] = due[j-1], due[j]
		}
	}
	for _, t := range due {
		go t.f()
	}
}
