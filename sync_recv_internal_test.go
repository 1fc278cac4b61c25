package federation

import (
	"errors"
	"testing"

	"github.com/devicemesh/federation/core"
)

// asmTxn is origin's transaction of n changes starting at first.
func asmTxn(origin core.DeviceID, first uint64, n int) []core.Change {
	out := make([]core.Change, n)
	for i := range out {
		seq := first + uint64(i)
		out[i] = core.Change{Record: core.Record{Collection: "c", Key: "k", Value: []byte("v"),
			Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}},
			TxnFirst: first, TxnLen: uint32(n)}
	}
	return out
}

// TestAssemblerToleratesWhatACorrectSenderDoes: every interleaving a
// well-behaved sender can produce is assembled into whole transactions
// (each exactly once), never a protocol error: a transaction sent again
// from its start after a partial send, changes sent twice, the rest of a
// partial transaction this device meanwhile received whole elsewhere, and
// a tail of a transaction it holds. Before, each of these closed the
// session ("out of order", "without the start of its transaction",
// "caught up with a transaction incomplete").
func TestAssemblerToleratesWhatACorrectSenderDoes(t *testing.T) {
	a := core.DeviceID{1}
	t1, t2 := asmTxn(a, 1, 5), asmTxn(a, 6, 3)
	cat := func(parts ...[]core.Change) []core.Change {
		var out []core.Change
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name   string
		frames [][]core.Change
		held   uint64 // what the store holds of a while the frames arrive
		want   []uint64
	}{
		{"restart from the start", [][]core.Change{t1[:3], cat(t1, t2)}, 0, []uint64{1, 6}},
		{"changes sent twice", [][]core.Change{t1[:3], t1[1:4], t1[3:], t2}, 0, []uint64{1, 6}},
		{"partial, then held whole, then the next", [][]core.Change{t1[:2], t2}, 5, []uint64{6}},
		{"tail of a held transaction", [][]core.Change{t1[2:], t2}, 5, []uint64{6}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asm := newTxnAssembler(1 << 20)
			var got []uint64
			for _, f := range tc.frames {
				ready, err := asm.add(f, core.VersionVector{a: tc.held})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range ready {
					if err := r.Validate(); err != nil {
						t.Fatal(err)
					}
					got = append(got, r[0].TxnFirst)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("assembled transactions starting at %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("assembled transactions starting at %v, want %v", got, tc.want)
				}
			}
			if asm.held != 0 || len(asm.pending) != 0 {
				t.Fatalf("left %d bytes in %d partial transactions", asm.held, len(asm.pending))
			}
		})
	}
}

// TestAssemblerRefusesMalformedInput: what no correct sender produces is
// still a protocol error: a transaction abandoned half-way that this
// device does not hold, changes skipped, a tail without its start.
func TestAssemblerRefusesMalformedInput(t *testing.T) {
	a := core.DeviceID{1}
	t1, t2 := asmTxn(a, 1, 5), asmTxn(a, 6, 3)
	cases := []struct {
		name   string
		frames [][]core.Change
	}{
		{"abandoned and not held", [][]core.Change{t1[:2], t2}},
		{"a change skipped", [][]core.Change{t1[:2], t1[3:]}},
		{"tail without its start", [][]core.Change{t1[2:]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			asm := newTxnAssembler(1 << 20)
			var err error
			for _, f := range tc.frames {
				if _, err = asm.add(f, core.VersionVector{}); err != nil {
					break
				}
			}
			if !errors.Is(err, core.ErrProtocol) {
				t.Fatalf("got %v, want a protocol error", err)
			}
		})
	}
}
