package syncer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
)

var devA, devB, devP, devX = core.DeviceID{0xa}, core.DeviceID{0xb}, core.DeviceID{0xc}, core.DeviceID{0xd}

// pair runs a session for each of a and b over one link and returns them;
// cancel stops both.
func pair(t *testing.T, a, b *memReplica) (ra, rb *running, l *pipeLink, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l = newLink()
	ea, eb := l.sides(a.self, b.self)
	ra, rb = start(ctx, testConfig(a, nil), ea), start(ctx, testConfig(b, nil), eb)
	t.Cleanup(func() { cancel(); l.close() })
	return ra, rb, l, cancel
}

// stop ends both sessions and checks they ended because they were told to.
func stop(t *testing.T, cancel func(), rs ...*running) {
	t.Helper()
	cancel()
	for _, r := range rs {
		if err := r.wait(t, 10*time.Second); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
			t.Errorf("session ended with %v", err)
		}
	}
}

// TestInitialSync: a device with nothing receives everything another
// holds, transactions of one and of several changes, each change applied
// exactly once, nothing sent twice, nothing echoed back.
func TestInitialSync(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	total := 0
	for i := range 40 {
		n := 1 + i%7
		a.write(t, "notes", string(rune('a'+i%26))+"-", n, 100)
		total += n
	}
	a.write(t, "big", "v", 3, 3<<20) // values over a frame's batch size
	total += 3
	ra, rb, _, cancel := pair(t, a, b)
	converge(t, a, b, 20*time.Second)
	stop(t, cancel, ra, rb)
	if got := b.appliedCount(); got != total {
		t.Errorf("b applied %d changes, want %d", got, total)
	}
	if tw := b.twice(); len(tw) > 0 {
		t.Errorf("applied twice: %v", tw)
	}
	sa, sb := ra.s.Status(), rb.s.Status()
	if sa.ChangesSent != uint64(total) || sb.ChangesRecv != uint64(total) {
		t.Errorf("a sent %d, b received %d changes, want %d each", sa.ChangesSent, sb.ChangesRecv, total)
	}
	if sb.ChangesSent != 0 || sa.Echoes != 0 || sb.Redundant != 0 {
		t.Errorf("waste: b sent %d, echoes %d, redundant %d", sb.ChangesSent, sa.Echoes, sb.Redundant)
	}
}

// TestResumeFromStoredVector: a session that breaks mid-stream leaves the
// receiver with whole transactions only; the next session starts from the
// version vector the receiver stored, sends exactly what it lacks, and no
// change is applied twice.
func TestResumeFromStoredVector(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	total := 0
	for range 30 {
		a.write(t, "log", "k", 4, 64<<10) // 256 KiB transactions
		total += 4
	}
	// First session: cut the link once b holds part of it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := newLink()
	ea, eb := l.sides(devA, devB)
	ra, rb := start(ctx, testConfig(a, nil), ea), start(ctx, testConfig(b, nil), eb)
	deadline := time.Now().Add(10 * time.Second)
	for {
		vv, _ := b.state()
		if vv[devA] >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b received nothing")
		}
		time.Sleep(time.Millisecond)
	}
	l.close() // the connection drops
	for _, r := range []*running{ra, rb} {
		if err := r.wait(t, 10*time.Second); err == nil {
			t.Error("a session over a dropped link ended without an error")
		}
	}
	held, _ := b.state()
	if held[devA] == uint64(total) {
		t.Fatal("the first session finished before the cut: nothing to resume")
	}
	if held[devA]%4 != 0 {
		t.Fatalf("b holds %d changes: part of a transaction", held[devA])
	}
	// Second session: resumes from held.
	ra2, rb2, _, cancel2 := pair(t, a, b)
	converge(t, a, b, 20*time.Second)
	stop(t, cancel2, ra2, rb2)
	if got, want := ra2.s.Status().ChangesSent, uint64(total)-held[devA]; got != want {
		t.Errorf("resumed session sent %d changes, want %d (b held %d of %d)", got, want, held[devA], total)
	}
	if rb2.s.Status().Redundant != 0 {
		t.Errorf("resumed session delivered %d changes b held", rb2.s.Status().Redundant)
	}
	if tw := b.twice(); len(tw) > 0 {
		t.Errorf("applied twice: %v", tw)
	}
	if got := b.appliedCount(); got != total {
		t.Errorf("b applied %d changes, want %d", got, total)
	}
}

// TestGapGoesToRepair: a sender whose changelog was compacted cannot serve
// deltas; it repairs by Merkle descent: the receiver gets the records (not
// the changes), raises its version vector, and the two converge.
func TestGapGoesToRepair(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	for i := range 10 {
		a.write(t, "c"+string(rune('0'+i%3)), string(rune('a'+i))+"-", 10, 32)
	}
	if _, err := a.st.Truncate(context.Background(), core.VersionVector{devA: 60}); err != nil {
		t.Fatal(err)
	}
	ra, rb, _, cancel := pair(t, a, b)
	converge(t, a, b, 20*time.Second)
	stop(t, cancel, ra, rb)
	sa, sb := ra.s.Status(), rb.s.Status()
	if sa.Repairs != 1 {
		t.Errorf("a drove %d repairs, want 1", sa.Repairs)
	}
	if sb.RecordsRecv != 100 || b.records != 100 {
		t.Errorf("b received %d records, installed %d, want 100", sb.RecordsRecv, b.records)
	}
	if got := b.appliedCount(); got != 0 {
		t.Errorf("b applied %d changes: the log could serve none", got)
	}
	if vv, _ := b.state(); vv[devA] != 100 {
		t.Errorf("b's version vector %v after the repair, want a:100", vv)
	}
}

// TestBothSidesSendAtOnce: two devices with a backlog each, far larger
// than the stream's window, send at the same time:
// neither blocks the other, both converge, each change applied once.
func TestBothSidesSendAtOnce(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	for range 20 {
		a.write(t, "shared", "a", 50, 4<<10)
		b.write(t, "shared", "b", 50, 4<<10)
	}
	a.write(t, "shared", "same", 5, 10) // the same keys on both sides
	b.write(t, "shared", "same", 5, 10)
	ra, rb, _, cancel := pair(t, a, b)
	converge(t, a, b, 30*time.Second)
	stop(t, cancel, ra, rb)
	for _, r := range []*memReplica{a, b} {
		if got := r.appliedCount(); got != 1005 {
			t.Errorf("%s applied %d changes, want 1005", r.self.Short(), got)
		}
		if tw := r.twice(); len(tw) > 0 {
			t.Errorf("%s applied twice: %v", r.self.Short(), tw)
		}
	}
	if sa, sb := ra.s.Status(), rb.s.Status(); sa.ChangesSent != 1005 || sb.ChangesSent != 1005 {
		t.Errorf("sent %d and %d changes, want 1005 each", sa.ChangesSent, sb.ChangesSent)
	}
}

// script plays a peer frame by frame against one real session and
// collects what the session sends.
type script struct {
	t    *testing.T
	l    *pipeLink
	mu   sync.Mutex
	got  []wire.Frame
	done chan struct{}
}

// newScript starts a session for r whose peer is the script (as devP).
func newScript(t *testing.T, r *memReplica, lim Limits) (*script, *running) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := newLink()
	t.Cleanup(func() { cancel(); l.close() })
	cfg := testConfig(r, nil)
	if lim != (Limits{}) {
		cfg.Limits = lim
	}
	e, _ := l.sides(r.self, devP)
	s := &script{t: t, l: l, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		var buf []byte
		for {
			f, err := wire.ReadFrame(l.ab, buf, wire.MaxFrameSize)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got = append(s.got, wire.Frame{Type: f.Type, Payload: append([]byte(nil), f.Payload...)})
			s.mu.Unlock()
		}
	}()
	return s, start(ctx, cfg, e)
}

// send writes one frame as the peer; errors (the session hung up) are
// ignored: the session's result tells.
func (s *script) send(t wire.Type, payload []byte) {
	_ = wire.WriteFrame(s.l.ba, t, payload)
}

// raw writes bytes as the peer.
func (s *script) raw(b []byte) { _, _ = s.l.ba.Write(b) }

// greet sends a hello claiming vv and an empty Direct set.
func (s *script) greet(vv core.VersionVector) {
	s.send(wire.TypeSyncHello, wire.AppendSyncHello(nil, wire.SyncHello{VV: vv, Instance: 7}))
	s.send(wire.TypeDirect, wire.AppendVV(nil, nil))
}

// sent returns the frames of type t the session sent so far.
func (s *script) sent(t wire.Type) []wire.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Frame
	for _, f := range s.got {
		if f.Type == t {
			out = append(out, f)
		}
	}
	return out
}

// ptxn is origin's transaction of n changes from first, with values of
// size bytes.
func ptxn(origin core.DeviceID, first uint64, n, size int) []core.Change {
	out := asmTxn(origin, first, n)
	for i := range out {
		out[i].Value = make([]byte, size)
		out[i].Timestamp = core.MakeTimestamp(1_700_000_000_000, uint16(i))
	}
	return out
}

// TestLyingPeer: a peer that breaks the protocol loses its session with
// the error kind that names what it did, and nothing of what it sent is
// applied but the whole transactions before the lie, each once.
func TestLyingPeer(t *testing.T) {
	t3 := ptxn(devP, 1, 3, 10)
	cases := []struct {
		name    string
		lim     Limits
		play    func(s *script)
		want    error
		applied int // changes applied before the lie
	}{
		{"changes before hello", Limits{}, func(s *script) {
			s.send(wire.TypeChanges, wire.AppendChanges(nil, t3))
		}, core.ErrProtocol, 0},
		{"second hello", Limits{}, func(s *script) {
			s.greet(nil)
			s.greet(nil)
		}, core.ErrProtocol, 0},
		{"forged start of a transaction", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, t3[2:]))
		}, core.ErrProtocol, 0},
		{"skipped sequence number", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, []core.Change{t3[0], t3[2]}))
		}, core.ErrProtocol, 0},
		{"a whole transaction, then one with a forged start", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, t3))
			s.send(wire.TypeChanges, wire.AppendChanges(nil, ptxn(devP, 10, 1, 10)))
		}, errReplicaGap, 3},
		{"changes of another origin beyond what it could hold", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, ptxn(devX, 5, 1, 10)))
		}, errReplicaGap, 0},
		{"caught up beyond what it sent", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, t3))
			s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 5}), nil))
		}, core.ErrProtocol, 3},
		{"caught up with a transaction incomplete", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeChanges, wire.AppendChanges(nil, t3[:2]))
			s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 2}), nil))
		}, core.ErrProtocol, 0},
		{"oversized frame", Limits{MaxFrame: 1 << 10}, func(s *script) {
			s.greet(nil)
			var h [wire.HeaderSize]byte
			h[0] = byte(wire.TypeChanges)
			binary.BigEndian.PutUint32(h[1:], 1<<10+1)
			s.raw(h[:])
		}, core.ErrFrameTooLarge, 0},
		{"incomplete transactions beyond the buffer", Limits{MaxPending: 64 << 10}, func(s *script) {
			s.greet(nil)
			big := ptxn(devP, 1, 100, 1<<10)
			for i := 0; i < 100; i += 10 {
				s.send(wire.TypeChanges, wire.AppendChanges(nil, big[i:i+10]))
			}
		}, ErrPendingTooLarge, 0},
		{"unsolicited repair replies", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeRoots, wire.AppendRoots(nil, nil))
			s.send(wire.TypeRoots, wire.AppendRoots(nil, nil))
		}, core.ErrProtocol, 0},
		{"repaired without the records it claims", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.TypeRepair, nil)
			s.send(wire.TypeRepaired, binary.AppendUvarint(wire.AppendVV(nil, core.VersionVector{devP: 50}), 3))
		}, core.ErrProtocol, 0},
		{"unknown frame type", Limits{}, func(s *script) {
			s.greet(nil)
			s.send(wire.Type(0x7f), []byte("x"))
		}, core.ErrProtocol, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplica(devB)
			s, rn := newScript(t, r, tc.lim)
			tc.play(s)
			err := rn.wait(t, 10*time.Second)
			if !errors.Is(err, tc.want) {
				t.Fatalf("session ended with %v, want %v", err, tc.want)
			}
			if got := r.appliedCount(); got != tc.applied {
				t.Errorf("applied %d changes, want %d", got, tc.applied)
			}
			if tw := r.twice(); len(tw) > 0 {
				t.Errorf("applied twice: %v", tw)
			}
			if vv, _ := r.state(); vv[devP] != uint64(tc.applied) || vv[devX] != 0 {
				t.Errorf("version vector %v after the lie", vv)
			}
			<-s.done
		})
	}
}

// TestReplayedTransactionsAppliedOnce: a peer that sends the same
// transactions again (a resend after a partial send, or a duplicate
// delivery) is no liar: the session carries on, acknowledges, and applies
// each change once.
func TestReplayedTransactionsAppliedOnce(t *testing.T) {
	r := newReplica(devB)
	s, rn := newScript(t, r, Limits{})
	t1, t2 := ptxn(devP, 1, 3, 10), ptxn(devP, 4, 2, 10)
	s.greet(nil)
	s.send(wire.TypeChanges, wire.AppendChanges(nil, t1))
	s.send(wire.TypeChanges, wire.AppendChanges(nil, append(append([]core.Change{}, t1...), t2[0])))
	s.send(wire.TypeChanges, wire.AppendChanges(nil, t2))
	s.send(wire.TypeChanges, wire.AppendChanges(nil, t2))
	s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 5}), nil))
	// The Ack of p:5 follows t2's first copy; the frames after it (the
	// last replay of t2, the CaughtUp) may still be read: wait for the
	// counts too (CI under load once closed the link before the last
	// replay was read, counting 3).
	deadline := time.Now().Add(10 * time.Second)
	for {
		acks := s.sent(wire.TypeAck)
		if len(acks) > 0 {
			vv, _, err := wire.DecodeVV(acks[len(acks)-1].Payload)
			if err == nil && vv[devP] == 5 && rn.s.Status().Redundant >= 5 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Ack of p:5 with every replay counted (redundant: %d)", rn.s.Status().Redundant)
		}
		time.Sleep(time.Millisecond)
	}
	s.l.close()
	if err := rn.wait(t, 10*time.Second); errors.Is(err, core.ErrProtocol) {
		t.Fatalf("replays ended the session as a protocol violation: %v", err)
	}
	if got := r.appliedCount(); got != 5 {
		t.Errorf("applied %d changes, want 5", got)
	}
	if tw := r.twice(); len(tw) > 0 {
		t.Errorf("applied twice: %v", tw)
	}
	if red := rn.s.Status().Redundant; red != 5 {
		t.Errorf("counted %d redundant changes, want 5 (t1 and t2 once more each)", red)
	}
}

// pendingTimers waits until clock holds at least n timers.
func pendingTimers(t *testing.T, clock *core.ManualClock, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for clock.Pending() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers pending, want %d", clock.Pending(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTimersRunOnScheduler: the session's timers run on Config.Scheduler,
// so a test (or a host) drives them: with a manual clock, a peer that
// never says hello, or stops mid-frame, is cut off (ErrStalled) when the
// clock passes the limit, not before; an idle session repeats its
// CaughtUp when the clock passes a heartbeat.
func TestTimersRunOnScheduler(t *testing.T) {
	lim := Limits{HelloTimeout: 10 * time.Second, FrameTimeout: 20 * time.Second, SyncTimeout: time.Minute}
	newSession := func(t *testing.T) (*script, *running, *core.ManualClock) {
		r := newReplica(devB)
		clock := core.NewManualClock(time.Unix(1_700_000_000, 0))
		ctx, cancel := context.WithCancel(context.Background())
		l := newLink()
		t.Cleanup(func() { cancel(); l.close() })
		cfg := testConfig(r, clock)
		cfg.Limits = lim
		e, _ := l.sides(devB, devP)
		s := &script{t: t, l: l, done: make(chan struct{})}
		go func() {
			defer close(s.done)
			for {
				f, err := wire.ReadFrame(l.ab, nil, wire.MaxFrameSize)
				if err != nil {
					return
				}
				s.mu.Lock()
				s.got = append(s.got, f)
				s.mu.Unlock()
			}
		}()
		return s, start(ctx, cfg, e), clock
	}
	stillRunning := func(t *testing.T, rn *running) {
		t.Helper()
		select {
		case err := <-rn.errc:
			t.Fatalf("session ended before the clock passed its limit: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Run("no hello", func(t *testing.T) {
		_, rn, clock := newSession(t)
		pendingTimers(t, clock, 1)
		clock.Advance(9 * time.Second)
		stillRunning(t, rn)
		clock.Advance(2 * time.Second)
		if err := rn.wait(t, 5*time.Second); !errors.Is(err, ErrStalled) {
			t.Fatalf("session ended with %v, want ErrStalled", err)
		}
	})
	t.Run("stopped mid-frame", func(t *testing.T) {
		s, rn, clock := newSession(t)
		s.greet(nil)
		f := frames(fr(wire.TypeChanges, wire.AppendChanges(nil, ptxn(devP, 1, 2, 100))))
		s.raw(f[:len(f)/2])
		deadline := time.Now().Add(5 * time.Second)
		for rn.s.Status().BytesRecv == 0 { // hello and Direct read
			if time.Now().After(deadline) {
				t.Fatal("hello never read")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // the half frame is read
		clock.Advance(19 * time.Second)
		stillRunning(t, rn)
		clock.Advance(2 * time.Second)
		if err := rn.wait(t, 5*time.Second); !errors.Is(err, ErrStalled) {
			t.Fatalf("session ended with %v, want ErrStalled", err)
		}
	})
	t.Run("heartbeat", func(t *testing.T) {
		s, _, clock := newSession(t)
		s.greet(nil)
		count := func() int { return len(s.sent(wire.TypeCaughtUp)) }
		deadline := time.Now().Add(5 * time.Second)
		for count() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no CaughtUp")
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(heartbeat + heartbeat/4) // real time passes; the session's does not
		if c := count(); c != 1 {
			t.Fatalf("%d CaughtUp frames before the clock moved, want 1", c)
		}
		deadline = time.Now().Add(5 * time.Second)
		clock.Advance(heartbeat)
		for count() < 2 {
			if time.Now().After(deadline) {
				t.Fatal("no CaughtUp repeated after a heartbeat")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// TestRootsDifferAtEqualVectors: two devices that hold the same changes
// but different records (a store lost a record, say) find out from each
// other's CaughtUp roots and reconcile by Merkle repair until the roots
// are equal; no change moves, and the lost record comes back.
func TestRootsDifferAtEqualVectors(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	a.write(t, "c", "k", 20, 16)
	ctx := context.Background()
	var txn [][]core.Change
	var all []core.Change
	if err := a.Changes(ctx, devA, 0, 0, func(c core.Change) error { all = append(all, c); return nil }); err != nil {
		t.Fatal(err)
	}
	txn = append(txn, all)
	if _, err := b.ApplyRemote(ctx, txn); err != nil {
		t.Fatal(err)
	}
	// b's store loses k7: its tree follows the store.
	b.mu.Lock()
	lost := all[7].Record
	lost.Value = []byte("damaged")
	lost.Timestamp = 1 // older than anything: a merge keeps a's version
	if err := b.st.Commit(ctx, core.Batch{Records: []core.Record{lost}}); err != nil {
		t.Fatal(err)
	}
	b.trees["c"].Set(lost.Key, merkle.RecordDigest(lost))
	b.mu.Unlock()
	if _, rb := b.state(); rootsKey(a.Roots(), rb) == ([32]byte{}) {
		t.Fatal("the damage left the roots equal")
	}
	ra, rb, _, cancel := pair(t, a, b)
	converge(t, a, b, 20*time.Second)
	stop(t, cancel, ra, rb)
	if sa, sb := ra.s.Status(), rb.s.Status(); sa.Repairs+sb.Repairs == 0 || sa.ChangesSent+sb.ChangesSent != 0 {
		t.Errorf("repairs %d+%d, changes sent %d+%d; want a repair and no changes", sa.Repairs, sb.Repairs, sa.ChangesSent, sb.ChangesSent)
	}
	got, err := b.Get(ctx, "c", lost.Key)
	if err != nil || string(got.Value) == "damaged" {
		t.Errorf("b's %s after the repair: %q, %v", lost.Key, got.Value, err)
	}
}
