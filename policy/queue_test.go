package policy_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/policy"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sim is one peer's sender in miniature: per-collection backlogs in
// changes, drained a batch per turn.
type sim struct {
	q       *policy.Queue
	backlog map[string]int
	sent    map[string]int64
}

func newSim(pl *policy.Planner, peer core.DeviceID) *sim {
	return &sim{q: pl.Queue(peer), backlog: map[string]int{}, sent: map[string]int64{}}
}

func (s *sim) backlogs() []policy.Backlog {
	var bs []policy.Backlog
	for c, n := range s.backlog {
		bs = append(bs, policy.Backlog{Collection: c, Changes: n, Bytes: int64(n) * 100})
	}
	return bs
}

// turn asks the queue and sends up to batch changes of its choice.
func (s *sim) turn(now time.Time, batch int) policy.Turn {
	tu := s.q.Next(now, s.backlogs())
	if !tu.OK {
		return tu
	}
	n := min(batch, s.backlog[tu.Collection])
	s.backlog[tu.Collection] -= n
	if s.backlog[tu.Collection] == 0 {
		delete(s.backlog, tu.Collection)
	}
	s.sent[tu.Collection] += int64(n) * 100
	s.q.Sent(tu.Collection, int64(n)*100)
	return tu
}

// TestHighOvertakesLowBacklog: 10,000 low-priority changes are queued, the
// sender is part way through them, then one high-priority change is
// queued: it is the very next choice, and the low backlog resumes after.
func TestHighOvertakesLowBacklog(t *testing.T) {
	pl := policy.NewPlanner(table())
	s := newSim(pl, phone)
	s.backlog["analytics"] = 10_000 // low, periodic: due (never flushed)
	s.backlog["media"] = 10_000     // low, on-demand (travels whole for now)
	for range 5 {
		require.Equal(t, core.PriorityLow, s.turn(t0, 100).Priority)
	}
	s.backlog["profile"] = 1
	tu := s.turn(t0, 100)
	require.Equal(t, "profile", tu.Collection)
	require.Equal(t, core.PriorityHigh, tu.Priority)
	require.NotEqual(t, "profile", s.turn(t0, 100).Collection)
}

func TestLocalOnlyNeverChosen(t *testing.T) {
	tab := table()
	tab.SetDevice(phone, policy.Device{Collections: map[string]policy.Override{"media": {Mode: ptr(core.ModeLocalOnly)}}})
	pl := policy.NewPlanner(tab)
	s := newSim(pl, phone)
	s.backlog["cache"] = 5
	s.backlog["_fed.trees"] = 5
	s.backlog["media"] = 5
	tu := s.turn(t0, 1)
	require.False(t, tu.OK)
	require.Empty(t, tu.Collection)
	require.True(t, tu.Wake.IsZero(), "nothing will ever fall due")
	// The laptop takes media.
	l := newSim(pl, laptop)
	l.backlog["cache"] = 5
	l.backlog["media"] = 5
	require.Equal(t, "media", l.turn(t0, 1).Collection)
}

// TestPeriodicFlush: a periodic backlog goes out at once the first time,
// then waits its interval after the flush that emptied it; a flush in
// progress is not cut off by the interval.
func TestPeriodicFlush(t *testing.T) {
	tab := table()
	tab.Set("analytics", core.Policy{Priority: core.PriorityLow, Mode: core.ModePeriodic, Interval: 10 * time.Minute})
	s := newSim(policy.NewPlanner(tab), phone)
	s.backlog["analytics"] = 3
	for range 3 {
		require.Equal(t, "analytics", s.turn(t0, 1).Collection)
	}
	tu := s.turn(t0.Add(time.Second), 1) // sees the empty backlog: the flush ended
	require.False(t, tu.OK)
	s.backlog["analytics"] = 2
	tu = s.turn(t0.Add(time.Minute), 1)
	require.False(t, tu.OK)
	require.Equal(t, t0.Add(time.Second+10*time.Minute), tu.Wake)
	// Immediate collections are not held back meanwhile.
	s.backlog["x"] = 1
	tu = s.turn(t0.Add(2*time.Minute), 1)
	require.Equal(t, "x", tu.Collection)
	require.Equal(t, t0.Add(time.Second+10*time.Minute), tu.Wake)
	// Due: the flush starts and stays open until the backlog is gone, even
	// as more arrives.
	now := t0.Add(time.Second + 10*time.Minute)
	require.Equal(t, "analytics", s.turn(now, 1).Collection)
	s.backlog["analytics"] += 5
	for range 6 {
		require.Equal(t, "analytics", s.turn(now, 1).Collection)
	}
	require.False(t, s.turn(now, 1).OK)
}

// TestFairWithinPriority: two medium collections with backlogs share the
// link by weight, in bytes, not by turns.
func TestFairWithinPriority(t *testing.T) {
	tab := table()
	tab.SetWeight("b", 2)
	s := newSim(policy.NewPlanner(tab), phone)
	s.backlog["a"], s.backlog["b"] = 1_000_000, 1_000_000
	for range 300 {
		s.turn(t0, 10)
	}
	require.InDelta(t, 2.0, float64(s.sent["b"])/float64(s.sent["a"]), 0.05)
	// A collection that was idle does not make up for lost time: it gets
	// its share from now on, not the whole link.
	s.backlog["c"] = 1_000_000
	got := map[string]int{}
	for range 40 {
		got[s.turn(t0, 10).Collection]++
	}
	require.InDelta(t, 10, got["c"], 1, "%v", got)
	require.InDelta(t, 10, got["a"], 1, "%v", got)
	require.InDelta(t, 20, got["b"], 1, "%v", got)
}

// TestIdleCreditNotSavedAcrossLevels: a low collection that went idle and
// came back while a high one held the link does not claim the bytes it
// missed when the low level gets its turn again.
func TestIdleCreditNotSavedAcrossLevels(t *testing.T) {
	s := newSim(policy.NewPlanner(table()), phone)
	s.backlog["media"] = 10 // low
	s.backlog["analytics"] = 1_000_000
	for range 40 { // media drains early, analytics keeps going
		s.turn(t0, 1)
	}
	require.Zero(t, s.backlog["media"])
	s.backlog["profile"] = 3 // high holds the link ...
	s.turn(t0, 1)
	s.backlog["media"] = 1_000 // ... while media comes back
	s.turn(t0, 1)
	s.turn(t0, 1)
	got := map[string]int{}
	for range 20 {
		got[s.turn(t0, 1).Collection]++
	}
	require.InDelta(t, 10, got["media"], 1, "%v", got)
}

// TestQueueProperties drives a queue with random tables, backlogs and
// batches: every choice is admitted, of the highest priority with a
// backlog, and nothing is chosen only when nothing admitted waits.
func TestQueueProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		tab := policy.NewTable(core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
		names := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
		for _, c := range names {
			mode := rapid.SampledFrom([]core.Mode{core.ModeImmediate, core.ModeOnDemand, core.ModeLocalOnly}).Draw(rt, "mode "+c)
			pri := core.Priority(rapid.IntRange(int(core.PriorityNone), int(core.PriorityHigh)).Draw(rt, "priority "+c))
			tab.Set(c, core.Policy{Priority: pri, Mode: mode})
			tab.SetWeight(c, rapid.IntRange(0, 4).Draw(rt, "weight "+c))
		}
		if rapid.Bool().Draw(rt, "override") {
			tab.SetDevice(phone, policy.Device{Collections: map[string]policy.Override{
				rapid.SampledFrom(names).Draw(rt, "excluded"): {Mode: ptr(core.ModeLocalOnly)},
				rapid.SampledFrom(names).Draw(rt, "raised"):   {Priority: ptr(core.PriorityHigh)},
			}})
		}
		pl := policy.NewPlanner(tab)
		s := newSim(pl, phone)
		steps := rapid.IntRange(1, 200).Draw(rt, "steps")
		for i := range steps {
			if rapid.Bool().Draw(rt, fmt.Sprint("queue ", i)) {
				c := rapid.SampledFrom(names).Draw(rt, fmt.Sprint("collection ", i))
				s.backlog[c] += rapid.IntRange(1, 10_000).Draw(rt, fmt.Sprint("changes ", i))
			}
			want, any := core.PriorityNone, false
			for c, n := range s.backlog {
				if d := pl.Decide(phone, c); n > 0 && d.Admitted() && (!any || d.Priority > want) {
					want, any = d.Priority, true
				}
			}
			tu := s.turn(t0, rapid.IntRange(1, 500).Draw(rt, fmt.Sprint("batch ", i)))
			if !any {
				if tu.OK {
					rt.Fatalf("chose %s with nothing admitted waiting", tu.Collection)
				}
				continue
			}
			if !tu.OK {
				rt.Fatalf("chose nothing with an admitted backlog of priority %v", want)
			}
			if !pl.Admit(phone, tu.Collection) {
				rt.Fatalf("chose %s, which does not travel to the peer", tu.Collection)
			}
			if tu.Priority != want || pl.Priority(phone, tu.Collection) != want {
				rt.Fatalf("chose %s at %v while %v waits", tu.Collection, tu.Priority, want)
			}
		}
	})
}

// TestHighAfterLowProperty: whatever lower-priority backlogs are queued
// (up to 10,000 changes each) and however far the sender got through
// them, a high-priority change queued next is the next choice.
func TestHighAfterLowProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		pl := policy.NewPlanner(table())
		s := newSim(pl, phone)
		low := []string{"analytics", "media", "unknown", "other", "cache", "_fed.trees"}
		for _, c := range low {
			if n := rapid.IntRange(0, 10_000).Draw(rt, c); n > 0 {
				s.backlog[c] = n
			}
		}
		for i := range rapid.IntRange(0, 50).Draw(rt, "turns") {
			s.turn(t0, rapid.IntRange(1, 2048).Draw(rt, fmt.Sprint("batch ", i)))
		}
		s.backlog["profile"] = 1
		if tu := s.turn(t0, 2048); tu.Collection != "profile" {
			rt.Fatalf("chose %s (%v) before the high-priority change", tu.Collection, tu.Priority)
		}
	})
}

// TestFairnessProperty: collections of one priority, all with endless
// backlogs, sent in batches of random sizes: at every turn, the bytes each
// received divided by its weight differ by at most one batch's worth.
func TestFairnessProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		tab := policy.NewTable(core.Policy{Priority: core.PriorityLow, Mode: core.ModeImmediate})
		k := rapid.IntRange(2, 6).Draw(rt, "collections")
		w := map[string]int{}
		for i := range k {
			c := fmt.Sprint("c", i)
			w[c] = rapid.IntRange(1, 5).Draw(rt, "weight "+c)
			tab.SetWeight(c, w[c])
		}
		q := policy.NewPlanner(tab).Queue(phone)
		var bs []policy.Backlog
		for c := range w {
			bs = append(bs, policy.Backlog{Collection: c, Changes: 1})
		}
		const maxBatch = 1 << 20
		sent := map[string]int64{}
		for i := range rapid.IntRange(1, 300).Draw(rt, "turns") {
			tu := q.Next(t0, bs)
			n := rapid.Int64Range(1, maxBatch).Draw(rt, fmt.Sprint("bytes ", i))
			sent[tu.Collection] += n
			q.Sent(tu.Collection, n)
			for a := range w {
				for b := range w {
					d := float64(sent[a])/float64(w[a]) - float64(sent[b])/float64(w[b])
					if math.Abs(d) > maxBatch {
						rt.Fatalf("unfair after %d turns: %s %d/%d against %s %d/%d", i+1, a, sent[a], w[a], b, sent[b], w[b])
					}
				}
			}
		}
	})
}
