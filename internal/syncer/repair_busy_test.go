package syncer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
)

// slowGet is a replica whose record reads are slow (a loaded phone, a
// cold disk): a repair's push of many records takes several times
// Limits.SyncTimeout.
type slowGet struct {
	*memReplica
	delay time.Duration
}

func (s slowGet) Get(ctx context.Context, coll, key string) (core.Record, error) {
	time.Sleep(s.delay)
	return s.memReplica.Get(ctx, coll, key)
}

// TestRepairAnswersWhilePushing: two devices repair towards each other at
// once, each pushing 160 large records that take about 1.6 s to read,
// with a SyncTimeout of 400 ms. Each keeps answering the other's repair
// between the frames of its push, so neither session ends for a timeout
// and both converge. (The send goroutine used to answer only once its
// push was done: the peer's repair timed out, the session ended, and the
// next session pushed again, for ever, on a loaded machine.)
func TestRepairAnswersWhilePushing(t *testing.T) {
	ctx := context.Background()
	a, b := newReplica(devA), newReplica(devB)
	const n, size = 160, 256 << 10 // 8 records to a 2 MiB frame
	a.write(t, "c", "k", n, size)
	var all []core.Change
	if err := a.Changes(ctx, devA, 0, 0, func(c core.Change) error { all = append(all, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ApplyRemote(ctx, [][]core.Change{all}); err != nil {
		t.Fatal(err)
	}
	// b's store loses every record's content: same changes, other
	// records, so each side's repair pushes all n.
	b.mu.Lock()
	for _, c := range all {
		lost := c.Record
		lost.Value = []byte("damaged")
		lost.Timestamp = 1
		if err := b.st.Commit(ctx, core.Batch{Records: []core.Record{lost}}); err != nil {
			t.Fatal(err)
		}
		b.trees["c"].Set(lost.Key, merkle.RecordDigest(lost))
	}
	b.mu.Unlock()

	l := newLink()
	t.Cleanup(l.close)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ea, eb := l.sides(a.self, b.self)
	cfg := func(r *memReplica) Config {
		c := testConfig(r, nil)
		c.Replica = slowGet{r, 10 * time.Millisecond}
		c.Limits.SyncTimeout = 400 * time.Millisecond
		return c
	}
	ra, rb := start(runCtx, cfg(a), ea), start(runCtx, cfg(b), eb)
	// Both ask for a repair at once, as a device whose changelog cannot
	// serve its peer does while that peer repairs towards it.
	for _, rn := range []*running{ra, rb} {
		rn.s.repairReq <- struct{}{}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		va, roa := a.state()
		vb, rob := b.state()
		if va.Compare(vb) == core.Equal && rootsKey(roa, rob) == ([32]byte{}) &&
			ra.s.Status().Repairs > 0 && rb.s.Status().Repairs > 0 {
			break // converged, and both repairs done
		}
		for i, rn := range []*running{ra, rb} {
			select {
			case err := <-rn.errc:
				other := []*running{rb, ra}[i]
				select {
				case oerr := <-other.errc:
					t.Fatalf("the sessions ended during the repairs: %v; %v", err, oerr)
				case <-time.After(time.Second):
					t.Fatalf("a session ended during the repairs: %v", err)
				}
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 30s: converged %v, repairs done %d and %d", va.Compare(vb) == core.Equal && rootsKey(roa, rob) == ([32]byte{}),
				ra.s.Status().Repairs, rb.s.Status().Repairs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop(t, cancel, ra, rb)
}

// TestRepairWaitsWhileDataArrives: a repair waits for the peer's answer
// SyncTimeout at a time while the peer's data keeps arriving (its answer
// is queued behind that data on the stream), and gives up SyncTimeout
// after the data stops, heartbeats notwithstanding.
func TestRepairWaitsWhileDataArrives(t *testing.T) {
	const timeout = 300 * time.Millisecond
	r := newReplica(devB)
	s, rn := newScript(t, r, Limits{SyncTimeout: timeout})
	s.greet(nil)
	rn.s.repairReq <- struct{}{}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.sent(wire.TypeRepair)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no Repair sent")
		}
		time.Sleep(time.Millisecond)
	}
	// Four SyncTimeouts of records, one frame every 100 ms, and never
	// the Roots asked for.
	for i := range 12 {
		s.send(wire.TypeRecords, wire.AppendChanges(nil, ptxn(devP, uint64(i+1), 1, 100)))
		time.Sleep(timeout / 3)
		select {
		case err := <-rn.errc:
			t.Fatalf("the session ended while the peer's records arrived (%v in): %v", time.Duration(i+1)*timeout/3, err)
		default:
		}
	}
	// Heartbeats only: the wait ends.
	stopped := time.Now()
	for {
		s.send(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{}), nil))
		select {
		case err := <-rn.errc:
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("the session ended with %v, want ErrTimeout", err)
			}
			if d := time.Since(stopped); d > 3*timeout {
				t.Fatalf("timed out %v after the data stopped, want about %v", d, timeout)
			}
			return
		case <-time.After(timeout / 3):
		}
		if time.Since(stopped) > 5*time.Second {
			t.Fatal("the session still waits 5 s after the data stopped")
		}
	}
}
