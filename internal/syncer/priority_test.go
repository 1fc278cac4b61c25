package syncer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// prioPolicy gives each named collection a priority towards every peer;
// other collections are medium.
type prioPolicy map[string]core.Priority

func (p prioPolicy) Syncs(string) bool                     { return true }
func (p prioPolicy) Admit(core.DeviceID, string) bool      { return true }
func (p prioPolicy) Stub(core.DeviceID, string, bool) bool { return false }
func (p prioPolicy) Priority(_ core.DeviceID, c string) core.Priority {
	if pr, ok := p[c]; ok {
		return pr
	}
	return core.PriorityMedium
}

var bulkUrgent = prioPolicy{"bulk": core.PriorityLow, "urgent": core.PriorityHigh}

// backlog writes low changes of the low-priority collection "bulk" to a,
// in transactions of perTxn, then one change of the high-priority
// "urgent", and returns an UrgentIndex that holds it (as the node's commit
// observer would).
func backlog(t *testing.T, a *memReplica, low, perTxn int) *UrgentIndex {
	t.Helper()
	for i := 0; i < low; i += perTxn {
		a.write(t, "bulk", fmt.Sprintf("%05d-", i), perTxn, 20)
	}
	a.write(t, "urgent", "now", 1, 4)
	idx := &UrgentIndex{}
	idx.Note(Dot{Origin: a.self, Seq: a.seq})
	return idx
}

// urgentConfig is a's session config for backlog: the priorities of bulk
// and urgent, and its urgent index.
func urgentConfig(a *memReplica, idx *UrgentIndex) Config {
	cfg := testConfig(a, nil)
	cfg.Policy, cfg.Urgent = bulkUrgent, idx
	return cfg
}

// pairConfigs runs a session for each config over one link; wrap, when
// set, wraps the first side's outbound stream.
func pairConfigs(t *testing.T, ca, cb Config, wrap func(core.Stream) core.Stream) (ra, rb *running, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := newLink()
	ea, eb := l.sides(ca.Self, cb.Self)
	if wrap != nil {
		ea.out = wrap(ea.out)
	}
	ra, rb = start(ctx, ca, ea), start(ctx, cb, eb)
	t.Cleanup(func() { cancel(); l.close() })
	return ra, rb, cancel
}

// installed returns the record versions r installed, in order, and how
// many of them came early (ApplyRecords).
func (r *memReplica) installed() ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order), r.records
}

// TestPriorityOvertakesBacklog: 10,000 low-priority changes are queued
// for a peer, then one high-priority change of the same origin: on the
// same session, the high one is installed at the peer before any of the
// backlog, each change travels once and is committed once, and both sides
// end with the same version vector and roots. Also with a backlog that
// fits in one read of the log (the high change is then in the batch the
// stream is about to send).
func TestPriorityOvertakesBacklog(t *testing.T) {
	for _, low := range []int{10_000, 1_000} {
		t.Run(fmt.Sprint(low), func(t *testing.T) { testOvertakes(t, low, 500) })
	}
}

func testOvertakes(t *testing.T, low, perTxn int) {
	a, b := newReplica(devA), newReplica(devB)
	idx := backlog(t, a, low, perTxn)
	ra, rb, cancel := pairConfigs(t, urgentConfig(a, idx), testConfig(b, nil), nil)
	converge(t, a, b, 30*time.Second)
	stop(t, cancel, ra, rb)

	order, early := b.installed()
	if len(order) != low+1 {
		t.Fatalf("b installed %d record versions, want %d (each once)", len(order), low+1)
	}
	if order[0] != "urgent/now0" || order[1] != "bulk/00000-0" || order[low] != fmt.Sprintf("bulk/%05d-%d", low-perTxn, perTxn-1) {
		t.Errorf("b installed %s, %s, ..., %s: want the urgent change first, then the backlog in order", order[0], order[1], order[low])
	}
	if early != 1 {
		t.Errorf("b installed %d records ahead of the stream, want 1", early)
	}
	if got := b.appliedCount(); got != low+1 {
		t.Errorf("b committed %d changes, want %d", got, low+1)
	}
	if tw := b.twice(); len(tw) > 0 {
		t.Errorf("committed twice: %v", tw)
	}
	sa, sb := ra.s.Status(), rb.s.Status()
	if sa.ChangesSent != uint64(low+1) || sb.ChangesRecv != uint64(low+1) {
		t.Errorf("a sent %d, b received %d changes, want %d each", sa.ChangesSent, sb.ChangesRecv, low+1)
	}
	if sb.Redundant != 0 || sa.Echoes != 0 || sb.ChangesSent != 0 {
		t.Errorf("waste: redundant %d, echoes %d, b sent %d", sb.Redundant, sa.Echoes, sb.ChangesSent)
	}
}

// TestUrgentTransactionReadOnce: a large top-priority transaction (one
// urgent dot per change) overtakes the backlog as one Priority frame, and
// the sender reads it from the log a bounded number of times, not once
// per dot.
func TestUrgentTransactionReadOnce(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	const low, high = 10_000, 1_000
	for i := 0; i < low; i += 500 {
		a.write(t, "bulk", fmt.Sprintf("%05d-", i), 500, 20)
	}
	a.write(t, "urgent", "u", high, 4)
	idx := &UrgentIndex{}
	for s := a.seq - high + 1; s <= a.seq; s++ {
		idx.Note(Dot{Origin: a.self, Seq: s})
	}
	a.reads.Store(0)
	ra, rb, cancel := pairConfigs(t, urgentConfig(a, idx), testConfig(b, nil), nil)
	converge(t, a, b, 30*time.Second)
	stop(t, cancel, ra, rb)
	if order, early := b.installed(); early != high || order[0] != "urgent/u0" {
		t.Errorf("b installed %d records ahead of the stream, first %s; want %d, urgent/u0", early, order[0], high)
	}
	if sa := ra.s.Status(); sa.ChangesSent != low+high {
		t.Errorf("a sent %d changes, want %d", sa.ChangesSent, low+high)
	}
	if n := a.reads.Load(); n > 100 {
		t.Errorf("a read its log %d times for %d changes", n, low+high)
	}
}

// TestUrgentIndex: the index hands each dot out once per cursor, oldest
// first, and forgets all but the latest MaxUrgent.
func TestUrgentIndex(t *testing.T) {
	var idx UrgentIndex
	if d, next := idx.Urgent(0); len(d) != 0 || next != 0 {
		t.Fatalf("empty index: %v, %d", d, next)
	}
	idx.Note(Dot{devA, 1}, Dot{devA, 2})
	d, next := idx.Urgent(0)
	if !slices.Equal(d, []Dot{{devA, 1}, {devA, 2}}) || next != 2 {
		t.Fatalf("got %v, %d", d, next)
	}
	if d, again := idx.Urgent(next); len(d) != 0 || again != next {
		t.Fatalf("nothing new: got %v, %d", d, again)
	}
	for s := uint64(3); s <= MaxUrgent+10; s++ {
		idx.Note(Dot{devB, s})
	}
	d, next = idx.Urgent(2)
	if len(d) != MaxUrgent || d[0] != (Dot{devB, 11}) || d[len(d)-1] != (Dot{devB, MaxUrgent + 10}) || next != MaxUrgent+10 {
		t.Fatalf("after overflow: %d dots from %v to %v, next %d", len(d), d[0], d[len(d)-1], next)
	}
	if d, _ := idx.Urgent(MaxUrgent + 8); !slices.Equal(d, []Dot{{devB, MaxUrgent + 9}, {devB, MaxUrgent + 10}}) {
		t.Fatalf("the last two: %v", d)
	}
}

// dropFrames passes a stream's frames on, except those of one type.
type dropFrames struct {
	core.Stream
	drop    wire.Type
	mu      sync.Mutex
	buf     []byte
	dropped int
}

func (d *dropFrames) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, b...)
	for len(d.buf) >= wire.HeaderSize {
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(d.buf[1:wire.HeaderSize]))
		if len(d.buf) < n {
			break
		}
		if wire.Type(d.buf[0]) == d.drop {
			d.dropped++
		} else if _, err := d.Stream.Write(d.buf[:n]); err != nil {
			return 0, err
		}
		d.buf = d.buf[n:]
	}
	return len(b), nil
}

func (d *dropFrames) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dropped
}

// TestLostPriorityFrameFallsBackInOrder: when the Priority frame is lost
// on the way, the stream (which skips the transaction) leaves a gap that
// the receiver notices at the sender's CaughtUp: the session ends, the
// receiver's version vector stays contiguous, and the next session sends
// the transaction in order, each change committed once.
func TestLostPriorityFrameFallsBackInOrder(t *testing.T) {
	a, b := newReplica(devA), newReplica(devB)
	const low, perTxn = 2_000, 500
	idx := backlog(t, a, low, perTxn)
	var lost *dropFrames
	ra, rb, cancel := pairConfigs(t, urgentConfig(a, idx), testConfig(b, nil), func(s core.Stream) core.Stream {
		lost = &dropFrames{Stream: s, drop: wire.TypePriority}
		return lost
	})
	if err := rb.wait(t, 10*time.Second); !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("b's session ended with %v, want a protocol error (a change never arrived)", err)
	}
	if err := ra.wait(t, 10*time.Second); err == nil {
		t.Error("a's session ended without an error")
	}
	cancel()
	if n := lost.count(); n != 1 {
		t.Fatalf("%d Priority frames lost, want 1", n)
	}
	if vv, _ := b.state(); vv[devA] != low {
		t.Fatalf("b holds %v after the first session, want %s:%d", vv, devA.Short(), low)
	}
	if _, early := b.installed(); early != 0 {
		t.Fatalf("b installed %d records ahead of the stream, none arrived", early)
	}

	ra2, rb2, cancel2 := pairConfigs(t, urgentConfig(a, idx), testConfig(b, nil), nil)
	converge(t, a, b, 30*time.Second)
	stop(t, cancel2, ra2, rb2)
	order, early := b.installed()
	if len(order) != low+1 || order[low] != "urgent/now0" || early != 0 {
		t.Errorf("b installed %d versions (%d early), last %s: want %d, none early, the urgent change last (in order)", len(order), early, order[len(order)-1], low+1)
	}
	if got := b.appliedCount(); got != low+1 {
		t.Errorf("b committed %d changes, want %d", got, low+1)
	}
	if tw := b.twice(); len(tw) > 0 {
		t.Errorf("committed twice: %v", tw)
	}
	if s := rb2.s.Status(); s.Redundant != 0 || s.ChangesRecv != 1 {
		t.Errorf("second session: b received %d changes, %d redundant; want 1 and 0", s.ChangesRecv, s.Redundant)
	}
}

// keyed gives a transaction's changes keys of their own.
func keyed(txn []core.Change, prefix string) []core.Change {
	for i := range txn {
		txn[i].Key = fmt.Sprintf("%s%d", prefix, i)
	}
	return txn
}

// TestPriorityHeldUntilStreamReachesIt: a transaction the peer sends
// ahead is visible at once without entering the version vector; sent
// again, it is ignored; it is committed in its place once the stream
// brings what comes before it, and the session acknowledges the whole.
func TestPriorityHeldUntilStreamReachesIt(t *testing.T) {
	r := newReplica(devB)
	s, rn := newScript(t, r, Limits{})
	t1, t2 := keyed(ptxn(devP, 1, 3, 10), "s"), keyed(ptxn(devP, 4, 2, 10), "p")
	s.greet(nil)
	s.send(wire.TypePriority, wire.AppendChanges(nil, t2))
	s.send(wire.TypePriority, wire.AppendChanges(nil, t2)) // a duplicate
	waitFor(t, "the records sent ahead", func() bool { _, early := r.installed(); return early == 2 })
	if vv, _ := r.state(); vv[devP] != 0 {
		t.Fatalf("version vector %v raised by a transaction sent ahead", vv)
	}
	if _, err := r.Get(context.Background(), "c", "p1"); err != nil {
		t.Fatalf("a record sent ahead is not visible: %v", err)
	}
	s.send(wire.TypeChanges, wire.AppendChanges(nil, t1))
	s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 5}), nil))
	waitFor(t, "an Ack of the whole", func() bool {
		acks := s.sent(wire.TypeAck)
		if len(acks) == 0 {
			return false
		}
		vv, _, err := wire.DecodeVV(acks[len(acks)-1].Payload)
		return err == nil && vv[devP] == 5
	})
	if got := r.appliedCount(); got != 5 {
		t.Errorf("committed %d changes, want 5", got)
	}
	if tw := r.twice(); len(tw) > 0 {
		t.Errorf("committed twice: %v", tw)
	}
	if order, _ := r.installed(); len(order) != 5 {
		t.Errorf("installed %v: want each record once", order)
	}
	if st := rn.s.Status(); st.Redundant != 2 || st.ChangesRecv != 7 {
		t.Errorf("received %d changes, %d redundant; want 7 and 2 (the duplicate)", st.ChangesRecv, st.Redundant)
	}
	select {
	case err := <-rn.errc:
		t.Fatalf("the session ended: %v", err)
	default:
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLyingPriorityPeer: a Priority frame that breaks the protocol ends
// the session, and nothing of it enters the changelog.
func TestLyingPriorityPeer(t *testing.T) {
	cases := []struct {
		name string
		play func(s *script)
	}{
		{"a part of a transaction", func(s *script) {
			s.send(wire.TypePriority, wire.AppendChanges(nil, ptxn(devP, 4, 3, 10)[:2]))
		}},
		{"overlapping one held", func(s *script) {
			s.send(wire.TypePriority, wire.AppendChanges(nil, ptxn(devP, 4, 2, 10)))
			s.send(wire.TypePriority, wire.AppendChanges(nil, ptxn(devP, 5, 2, 10)))
		}},
		{"caught up past a transaction held, without what comes before it", func(s *script) {
			s.send(wire.TypePriority, wire.AppendChanges(nil, ptxn(devP, 4, 2, 10)))
			s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 5}), nil))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplica(devB)
			s, rn := newScript(t, r, Limits{})
			s.greet(nil)
			tc.play(s)
			if err := rn.wait(t, 10*time.Second); !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("session ended with %v, want a protocol error", err)
			}
			if got := r.appliedCount(); got != 0 {
				t.Errorf("committed %d changes, want 0", got)
			}
			if vv, _ := r.state(); vv[devP] != 0 {
				t.Errorf("version vector %v after the lie", vv)
			}
			<-s.done
		})
	}
}

// txnOf is a transaction of origin o spanning first..last.
func txnOf(o core.DeviceID, first, last uint64) []core.Change {
	var t []core.Change
	for s := first; s <= last; s++ {
		t = append(t, core.Change{Record: core.Record{Origin: o, Seq: s}, TxnFirst: first, TxnLen: uint32(last - first + 1)})
	}
	return t
}

func spans(ts [][]core.Change) [][3]uint64 {
	var out [][3]uint64
	for _, t := range ts {
		out = append(out, [3]uint64{uint64(t[0].Origin[0]), t[0].TxnFirst, t[len(t)-1].Seq})
	}
	return out
}

// TestSplice: transactions received ahead of the in-order stream take
// their place in it exactly where the stream reaches them, whether the
// stream brings their predecessors or the store holds them already, and
// are dropped once the store holds them.
func TestSplice(t *testing.T) {
	a, b := core.DeviceID{1}, core.DeviceID{2}
	type txns = [][]core.Change
	for _, tc := range []struct {
		name  string
		held  txns
		ready txns
		have  core.VersionVector
		want  [][3]uint64
		left  int
	}{
		{"after the stream's last", txns{txnOf(a, 5, 6)}, txns{txnOf(a, 1, 2), txnOf(a, 3, 4)}, core.VersionVector{},
			[][3]uint64{{1, 1, 2}, {1, 3, 4}, {1, 5, 6}}, 0},
		{"before the stream's next", txns{txnOf(a, 5, 6)}, txns{txnOf(a, 7, 8)}, core.VersionVector{a: 4},
			[][3]uint64{{1, 5, 6}, {1, 7, 8}}, 0},
		{"the store reached it", txns{txnOf(a, 5, 6)}, nil, core.VersionVector{a: 4},
			[][3]uint64{{1, 5, 6}}, 0},
		{"held already", txns{txnOf(a, 5, 6)}, txns{txnOf(a, 7, 7)}, core.VersionVector{a: 6},
			[][3]uint64{{1, 7, 7}}, 0},
		{"not reached yet", txns{txnOf(a, 5, 6)}, txns{txnOf(a, 3, 3)}, core.VersionVector{a: 2},
			[][3]uint64{{1, 3, 3}}, 1},
		{"two in a row, two origins", txns{txnOf(a, 5, 6), txnOf(a, 7, 7), txnOf(b, 2, 2)},
			txns{txnOf(b, 1, 1), txnOf(a, 3, 4), txnOf(b, 3, 3), txnOf(a, 8, 9)}, core.VersionVector{a: 2},
			[][3]uint64{{2, 1, 1}, {1, 3, 4}, {2, 2, 2}, {2, 3, 3}, {1, 5, 6}, {1, 7, 7}, {1, 8, 9}}, 0},
	} {
		ps := &Session{}
		ps.prio.held = map[core.DeviceID]txns{}
		for _, h := range tc.held {
			o := h[0].Origin
			ps.prio.held[o] = append(ps.prio.held[o], h)
			ps.prio.heldCount++
			for _, c := range h {
				ps.prio.heldBytes += changeSize(c)
			}
		}
		got := ps.splice(tc.ready, tc.have)
		if g := spans(got); !slices.Equal(g, tc.want) {
			t.Errorf("%s: spliced %v, want %v", tc.name, g, tc.want)
		}
		if ps.prio.heldCount != tc.left {
			t.Errorf("%s: %d held left, want %d", tc.name, ps.prio.heldCount, tc.left)
		}
		if tc.left == 0 && (ps.prio.heldBytes != 0 || len(ps.prio.held) != 0) {
			t.Errorf("%s: %d bytes, %d origins held after all were spliced", tc.name, ps.prio.heldBytes, len(ps.prio.held))
		}
	}
}
