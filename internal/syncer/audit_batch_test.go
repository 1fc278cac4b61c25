package syncer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
)

// manualSched is a Scheduler whose timers fire only when the test says.
type manualSched struct {
	mu     sync.Mutex
	timers []*manualTimer
}

type manualTimer struct {
	f       func()
	stopped bool
	fired   bool
}

func (t *manualTimer) Stop() bool {
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

func (s *manualSched) Now() time.Time { return time.Unix(0, 0) }

func (s *manualSched) AfterFunc(_ time.Duration, f func()) core.Timer {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &manualTimer{f: f}
	s.timers = append(s.timers, t)
	return t
}

// fire runs the pending timers; it returns how many ran.
func (s *manualSched) fire() int {
	s.mu.Lock()
	var due []*manualTimer
	for _, t := range s.timers {
		if !t.stopped && !t.fired {
			t.fired = true
			due = append(due, t)
		}
	}
	s.mu.Unlock()
	for _, t := range due {
		t.f()
	}
	return len(due)
}

type recordedAudit struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (r *recordedAudit) Record(_ context.Context, e audit.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, e)
}

// take returns the entries recorded since the last take, as
// "kind txns/changes/bytes".
func (r *recordedAudit) take(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.entries {
		var n [3]int64
		for i, k := range []string{"txns", "changes", "bytes"} {
			f, ok := e.Detail.Get(k)
			if !ok {
				t.Fatalf("%v entry without %s", e.Kind, k)
			}
			n[i] = f.Num
		}
		out = append(out, fmt.Sprintf("%v %d/%d/%d", e.Kind, n[0], n[1], n[2]))
	}
	r.entries = nil
	return out
}

func expectEntries(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("recorded %q, want %q", got, want)
		}
	}
}

// The first batch of each direction after a quiet spell is audited at
// once (a window open for one direction does not hold up the other's
// first); the batches that follow within the window are summed into one
// entry recorded when it ends, counts intact; a window with no batch
// closes, and the session's end records what an open window summed.
func TestBatchAuditSumsWindows(t *testing.T) {
	ctx := context.Background()
	sched := &manualSched{}
	rec := &recordedAudit{}
	peer := core.DeviceID{7}
	sent, recv := newBatchAudit(rec, sched, peer, false), newBatchAudit(rec, sched, peer, true)

	recv.add(ctx, 2, 3, 30)
	sent.add(ctx, 1, 10, 100)
	expectEntries(t, rec.take(t), "batch-received 2/3/30", "batch-sent 1/10/100")
	sent.add(ctx, 1, 5, 50)
	recv.add(ctx, 1, 1, 10)
	sent.add(ctx, 0, 7, 70)
	expectEntries(t, rec.take(t))
	if n := sched.fire(); n != 2 {
		t.Fatalf("%d timers fired, want both windows'", n)
	}
	got := rec.take(t)
	slices.Sort(got)
	expectEntries(t, got, "batch-received 1/1/10", "batch-sent 1/12/120")

	// The windows were busy, so others opened: they end empty and close.
	if n := sched.fire(); n != 2 {
		t.Fatalf("%d timers fired, want the next windows'", n)
	}
	expectEntries(t, rec.take(t))
	if n := sched.fire(); n != 0 {
		t.Fatalf("%d timers fired after empty windows, want none", n)
	}

	// Quiet again: at once, then summed until the session ends.
	recv.add(ctx, 1, 1, 1)
	expectEntries(t, rec.take(t), "batch-received 1/1/1")
	recv.add(ctx, 4, 4, 4)
	recv.add(ctx, 5, 5, 5)
	recv.close(ctx)
	sent.close(ctx)
	expectEntries(t, rec.take(t), "batch-received 9/9/9")
	if n := sched.fire(); n != 0 {
		t.Fatalf("%d timers fired after close, want none", n)
	}
	sent.add(ctx, 2, 2, 2)
	expectEntries(t, rec.take(t), "batch-sent 2/2/2")
}
