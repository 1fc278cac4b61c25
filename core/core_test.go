package core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func TestDeviceIDTextForm(t *testing.T) {
	id := core.DeviceIDFromKey(core.PublicKey{1, 2, 3})
	s := id.String()
	if len(s) != 63 || strings.Count(s, "-") != 7 {
		t.Fatalf("text form %q: want 8 dash-separated blocks of 7", s)
	}
	back, err := core.ParseDeviceID(strings.ToLower(s))
	if err != nil || back != id {
		t.Fatalf("round trip: %v, %v", back, err)
	}
	if id.Short() != s[:7] {
		t.Fatalf("short form %q", id.Short())
	}
	// Every single mistyped character is caught by the check characters.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	for i := range s {
		if s[i] == '-' {
			continue
		}
		for _, c := range alphabet {
			if byte(c) == s[i] {
				continue
			}
			typo := s[:i] + string(c) + s[i+1:]
			if _, err := core.ParseDeviceID(typo); !errors.Is(err, core.ErrInvalidDeviceID) {
				t.Fatalf("typo at %d (%q) accepted", i, typo)
			}
		}
	}
	for _, bad := range []string{"", "short", s + "A", strings.Replace(s, s[:1], "1", 1)} {
		if _, err := core.ParseDeviceID(bad); !errors.Is(err, core.ErrInvalidDeviceID) {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestHLCMonotonicAndBoundedDrift(t *testing.T) {
	c := &clock{t: time.UnixMilli(1_700_000_000_000)}
	h := core.NewHLC(c, time.Minute)
	var last core.Timestamp
	next := func() core.Timestamp {
		ts, err := h.Now()
		if err != nil {
			t.Fatal(err)
		}
		if ts <= last {
			t.Fatalf("timestamp %v not after %v", ts, last)
		}
		last = ts
		return ts
	}
	next()
	c.t = c.t.Add(-time.Hour) // the wall clock jumps back
	for range 70000 {         // more than the 16-bit counter holds
		next()
	}
	// A remote timestamp a little ahead is followed; one too far ahead is
	// refused and leaves the clock as it was.
	c.t = c.t.Add(time.Hour) // back to the original physical time
	ahead := core.MakeTimestamp(c.t.Add(2*time.Hour).UnixMilli(), 0)
	if err := h.Update(core.MakeTimestamp(last.Millis()+10, 5)); err != nil {
		t.Fatal(err)
	}
	if ts := next(); ts.Millis() != last.Millis() || ts <= core.MakeTimestamp(last.Millis(), 5) {
		t.Fatalf("clock did not follow the remote timestamp: %v", ts)
	}
	before := h.Last()
	if err := h.Update(core.MakeTimestamp(c.t.Add(2*time.Minute).UnixMilli(), 0)); !errors.Is(err, core.ErrClockDrift) {
		t.Fatalf("far-future timestamp: %v", err)
	}
	if err := h.Update(ahead); !errors.Is(err, core.ErrClockDrift) {
		t.Fatalf("far-future timestamp: %v", err)
	}
	if h.Last() != before {
		t.Fatal("a refused timestamp moved the clock")
	}
}

// TestHLCReceiveBoundsTheClock: a trusted peer's timestamp is always
// accepted; the clock follows it exactly within MaxDrift of the physical
// clock, and only up to that bound beyond it, reporting by how much.
func TestHLCReceiveBoundsTheClock(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	h := core.NewHLC(clockAt(now), time.Minute)
	near := core.MakeTimestamp(now.Add(30*time.Second).UnixMilli(), 7)
	if beyond := h.Receive(near); beyond != 0 || h.Last() != near {
		t.Fatalf("within the bound: beyond %s, clock %v, want %v", beyond, h.Last(), near)
	}
	far := core.MakeTimestamp(now.Add(24*time.Hour).UnixMilli(), 0)
	beyond := h.Receive(far)
	if want := 24*time.Hour - time.Minute; beyond != want {
		t.Fatalf("beyond = %s, want %s", beyond, want)
	}
	if bound := core.MakeTimestamp(now.Add(time.Minute).UnixMilli(), 0); h.Last() != bound {
		t.Fatalf("clock %v, want the bound %v", h.Last(), bound)
	}
	// Repeated far-future timestamps never creep the clock further.
	for range 100 {
		h.Receive(far)
	}
	if ts, _ := h.Now(); ts.Millis() > now.Add(time.Minute).UnixMilli()+1 {
		t.Fatalf("clock crept to %v", ts)
	}
}

func TestVersionVectorCompare(t *testing.T) {
	a, b := core.DeviceID{1}, core.DeviceID{2}
	cases := []struct {
		x, y core.VersionVector
		want core.Ordering
	}{
		{core.VersionVector{}, nil, core.Equal},
		{core.VersionVector{a: 1}, core.VersionVector{a: 1, b: 0}, core.Equal},
		{core.VersionVector{a: 1}, core.VersionVector{a: 2}, core.Before},
		{core.VersionVector{a: 2, b: 1}, core.VersionVector{a: 2}, core.After},
		{core.VersionVector{a: 2}, core.VersionVector{b: 1}, core.Concurrent},
		{core.VersionVector{a: 3, b: 1}, core.VersionVector{a: 2, b: 2}, core.Concurrent},
	}
	for _, c := range cases {
		if got := c.x.Compare(c.y); got != c.want {
			t.Errorf("%v vs %v: %v, want %v", c.x, c.y, got, c.want)
		}
	}
	m := core.VersionVector{a: 1}
	m.Merge(core.VersionVector{a: 0, b: 4})
	if m[a] != 1 || m[b] != 4 {
		t.Fatalf("merge: %v", m)
	}
}

type clockAt time.Time

func (c clockAt) Now() time.Time { return time.Time(c) }

// TestManualClockDrivesTimers: timers on a ManualClock run only when the
// clock is advanced past them, and a stopped one never runs.
func TestManualClockDrivesTimers(t *testing.T) {
	c := core.NewManualClock(time.Unix(1000, 0))
	fired := make(chan string, 3)
	c.AfterFunc(time.Second, func() { fired <- "1s" })
	stopped := c.AfterFunc(2*time.Second, func() { fired <- "2s" })
	c.AfterFunc(3*time.Second, func() { fired <- "3s" })
	c.Advance(500 * time.Millisecond)
	select {
	case f := <-fired:
		t.Fatalf("%s fired after 0.5 s", f)
	case <-time.After(20 * time.Millisecond):
	}
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	c.Advance(3 * time.Second)
	got := map[string]bool{<-fired: true, <-fired: true}
	if !got["1s"] || !got["3s"] {
		t.Fatalf("fired %v, want 1s and 3s", got)
	}
	select {
	case f := <-fired:
		t.Fatalf("%s fired although stopped", f)
	case <-time.After(20 * time.Millisecond):
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers pending", c.Pending())
	}
	if _, ok := core.Clock(c).(core.Scheduler); !ok {
		t.Fatal("ManualClock is not a Scheduler")
	}
	if s := core.SchedulerOf(clockAt(time.Unix(5, 0))); !s.Now().Equal(time.Unix(5, 0)) {
		t.Fatal("SchedulerOf lost the clock's reading")
	}
}
