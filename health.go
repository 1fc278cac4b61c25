package federation

import (
	"sync/atomic"
)

// health counts conditions that do not stop the node but that the host
// should hear of (Stats, events). Clock drift is counted by the commit
// pipeline (replica.Replica.ClockDrift).
type health struct {
	repairsUnsettled atomic.Uint64
}
