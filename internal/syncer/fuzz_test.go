package syncer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/merkle"
)

// frames concatenates frames into the bytes of a stream.
func frames(fs ...wire.Frame) []byte {
	var out []byte
	for _, f := range fs {
		var err error
		if out, err = wire.AppendFrame(out, f.Type, f.Payload); err != nil {
			panic(err)
		}
	}
	return out
}

func fr(t wire.Type, payload []byte) wire.Frame { return wire.Frame{Type: t, Payload: payload} }

// fuzzSeeds are valid conversations of a peer: every frame type the
// session reads, in the orders a correct peer sends them.
func fuzzSeeds() [][]byte {
	hello := fr(wire.TypeSyncHello, wire.AppendSyncHello(nil, wire.SyncHello{VV: core.VersionVector{devP: 0}, Instance: 7}))
	helloHeld := fr(wire.TypeSyncHello, wire.AppendSyncHello(nil, wire.SyncHello{VV: core.VersionVector{devB: 3}, Instance: 7, Addrs: []string{"10.0.0.1:4242"}}))
	direct := fr(wire.TypeDirect, wire.AppendVV(nil, core.VersionVector{devX: 1}))
	noDirect := fr(wire.TypeDirect, wire.AppendVV(nil, nil))
	t1, t2 := ptxn(devP, 1, 3, 8), ptxn(devP, 4, 2, 8)
	caught := fr(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devP: 5}), map[string][32]byte{"c": {1}}))
	ack := fr(wire.TypeAck, wire.AppendVV(nil, core.VersionVector{devB: 3}))
	req := merkle.NewReconciler(merkle.New(), merkle.Config{Salt: 1}).Start()
	rb, err := req.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	rec := ptxn(devP, 9, 1, 8)
	rec[0].Context = core.VersionVector{devP: 9}
	return [][]byte{
		frames(hello, noDirect, fr(wire.TypeChanges, wire.AppendChanges(nil, t1)), fr(wire.TypeChanges, wire.AppendChanges(nil, t2)), caught),
		frames(helloHeld, direct, ack, fr(wire.TypeChanges, wire.AppendChanges(nil, t1[:2])), fr(wire.TypeChanges, wire.AppendChanges(nil, append(t1[2:], t2...)))),
		frames(hello, noDirect, fr(wire.TypeRepair, nil), fr(wire.TypeMerkleReq, wire.AppendNamed(nil, "c", rb)), fr(wire.TypeFetch, wire.AppendFetch(nil, "c", []string{"k0", "k1"}))),
		frames(hello, noDirect, fr(wire.TypeRepair, nil), fr(wire.TypeRecords, wire.AppendChanges(nil, rec)), fr(wire.TypeRepaired, binary.AppendUvarint(wire.AppendVV(nil, core.VersionVector{devP: 9}), 1))),
		frames(hello, noDirect, fr(wire.TypeRoots, wire.AppendRoots(nil, map[string][32]byte{"c": {2}})), fr(wire.TypeMerkleResp, wire.AppendNamed(nil, "c", nil))),
		frames(helloHeld, noDirect, fr(wire.TypeCaughtUp, wire.AppendRoots(wire.AppendVV(nil, core.VersionVector{devB: 3}), map[string][32]byte{"c": {3}}))),
		// A transaction sent ahead of the stream (twice), then the stream
		// that reaches it.
		frames(hello, noDirect, fr(wire.TypePriority, wire.AppendChanges(nil, t2)), fr(wire.TypePriority, wire.AppendChanges(nil, t2)), fr(wire.TypeChanges, wire.AppendChanges(nil, t1)), caught),
		// Selective sync: stubs in the stream, a Want, Values.
		frames(hello, noDirect, fr(wire.TypeChanges, wire.AppendChanges(nil, stubs(t1))), fr(wire.TypeWant, wire.AppendFetch(nil, "c", []string{"k0", "k1"})),
			fr(wire.TypeValues, wire.AppendValues(nil, "c", []wire.Value{{Key: "k0", Held: true, Origin: devP, Seq: 1, Value: []byte("v")}, {Key: "k1"}})), caught),
	}
}

// stubs returns txn's changes as stubs.
func stubs(txn []core.Change) []core.Change {
	out := make([]core.Change, len(txn))
	for i, c := range txn {
		c.Record = c.Record.AsStub()
		out[i] = c
	}
	return out
}

// FuzzSession feeds arbitrary bytes, as the peer's sync stream, into a
// session (seeded with valid conversations). Whatever they hold, the
// session never panics, ends when the stream ends, hands the replica only
// whole, well-formed transactions (each change at most once), and
// allocates memory bounded by the input and its limits.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newReplica(devB)
		r.write(t, "c", "k", 3, 16)
		clock := core.NewManualClock(time.Unix(1_700_000_000, 0))
		cfg := Config{Self: devB, Replica: r, Scheduler: clock,
			Limits: Limits{MaxFrame: 64 << 10, MaxPending: 256 << 10, SyncTimeout: time.Second}}
		l := newLink()
		defer l.close()
		e, _ := l.sides(devB, devP)
		drained := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, l.ab); close(drained) }()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rn := start(ctx, cfg, e)
		_, _ = l.ba.Write(data)
		_ = l.ba.CloseWrite()
		err := rn.wait(t, 10*time.Second)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatal("the session ended without an error at the end of the stream")
		}
		if errors.Is(err, context.Canceled) {
			t.Fatalf("the session ended by cancellation: %v", err)
		}
		if len(r.bad) > 0 {
			t.Fatalf("the session passed the replica malformed transactions: %v", r.bad)
		}
		if tw := r.twice(); len(tw) > 0 {
			t.Fatalf("applied twice: %v", tw)
		}
		vv, _ := r.state()
		for d := range r.applied {
			if d.seq > vv[d.origin] {
				t.Fatalf("change %s:%d applied beyond the version vector %v", d.origin.Short(), d.seq, vv)
			}
		}
		if alloc, bound := after.TotalAlloc-before.TotalAlloc, uint64(8<<20+512*len(data)); alloc > bound {
			t.Fatalf("allocated %d bytes for %d bytes of input (bound %d)", alloc, len(data), bound)
		}
		l.close()
		<-drained
	})
}
