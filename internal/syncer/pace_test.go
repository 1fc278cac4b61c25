package syncer

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
)

// paceWatch observes the Changes frames a sender writes: their size, and
// how many changes of the transactions they complete the receiver (b)
// has not committed yet when each one leaves.
type paceWatch struct {
	core.Stream
	b *memReplica

	mu        sync.Mutex
	buf       []byte
	completed int // changes of complete transactions sent
	frames    int // Changes frames
	largest   int // changes in the largest Changes frame
	ahead     int // most completed changes not committed by b at a frame's departure
}

func (w *paceWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	for len(w.buf) >= wire.HeaderSize {
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(w.buf[1:wire.HeaderSize]))
		if len(w.buf) < n {
			break
		}
		if wire.Type(w.buf[0]) == wire.TypeChanges {
			changes, err := wire.DecodeChanges(w.buf[wire.HeaderSize:n])
			if err != nil {
				w.mu.Unlock()
				return 0, err
			}
			w.frames++
			w.largest = max(w.largest, len(changes))
			if seq, completes := frameEnd(changes); completes {
				w.completed = int(seq) // one origin, sequences from 1
			}
			w.ahead = max(w.ahead, w.completed-w.b.appliedCount())
		}
		w.buf = w.buf[n:]
	}
	w.mu.Unlock()
	return w.Stream.Write(p)
}

// TestPacedBacklogBoundsWhatAPriorityWaitsBehind: a low-priority backlog
// that a high-priority change may overtake goes out in short frames, and
// never more than paceBudget changes of transactions the receiver can
// commit are on their way unacknowledged (what a Priority frame waits
// behind at the receiver, which reads its stream in order). The backlog
// still arrives whole, each change once, in order; a stream nothing can
// overtake (no Urgent source) is not paced.
func TestPacedBacklogBoundsWhatAPriorityWaitsBehind(t *testing.T) {
	const low, perTxn = 20_000, 100
	for _, paced := range []bool{true, false} {
		t.Run(fmt.Sprint("paced=", paced), func(t *testing.T) {
			a, b := newReplica(devA), newReplica(devB)
			for i := 0; i < low; i += perTxn {
				a.write(t, "bulk", fmt.Sprintf("%05d-", i), perTxn, 20)
			}
			ca := testConfig(a, nil)
			ca.Policy = bulkUrgent
			if paced {
				ca.Urgent = &UrgentIndex{}
			}
			var w *paceWatch
			ra, rb, cancel := pairConfigs(t, ca, testConfig(b, nil), func(s core.Stream) core.Stream {
				w = &paceWatch{Stream: s, b: b}
				return w
			})
			converge(t, a, b, 30*time.Second)
			stop(t, cancel, ra, rb)
			if got := b.appliedCount(); got != low {
				t.Fatalf("b committed %d changes, want %d", got, low)
			}
			if tw := b.twice(); len(tw) > 0 {
				t.Fatalf("committed twice: %v", tw)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Logf("%d Changes frames, largest %d changes; at most %d committable changes ahead of b's commits", w.frames, w.largest, w.ahead)
			if !paced {
				if w.largest <= paceChanges {
					t.Errorf("unpaced stream sent frames of at most %d changes", w.largest)
				}
				return
			}
			if w.largest > paceChanges {
				t.Errorf("paced stream sent a frame of %d changes, want at most %d", w.largest, paceChanges)
			}
			if w.ahead > paceBudget {
				t.Errorf("paced stream had %d committable changes ahead of the receiver's commits, want at most %d", w.ahead, paceBudget)
			}
		})
	}
}
