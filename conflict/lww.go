package conflict

import (
	"bytes"
	"context"
	"slices"

	"github.com/devicemesh/federation/core"
)

// Side names one of the two versions in a core.Conflict.
type Side int

// The two sides of a conflict.
const (
	// Local is Conflict.Local, the version the resolving device holds.
	Local Side = iota
	// Remote is Conflict.Remote, the version that arrived.
	Remote
)

// String names the side.
func (s Side) String() string {
	switch s {
	case Local:
		return "local"
	case Remote:
		return "remote"
	}
	return "side(?)"
}

// Compare orders two record versions for last-writer-wins: by Timestamp,
// then Origin (core.DeviceID.Compare), then Seq, then live before deleted,
// then value bytes. It is a total order on those fields, so the winner never
// depends on which version is local. The greater version wins.
func Compare(a, b core.Record) int {
	switch {
	case a.Timestamp != b.Timestamp:
		return cmpUint(uint64(a.Timestamp), uint64(b.Timestamp))
	case a.Origin != b.Origin:
		return a.Origin.Compare(b.Origin)
	case a.Seq != b.Seq:
		return cmpUint(a.Seq, b.Seq)
	case a.Deleted != b.Deleted:
		if a.Deleted {
			return 1
		}
		return -1
	}
	return bytes.Compare(a.Value, b.Value)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LWW is the last-writer-wins strategy: the version with the higher
// Timestamp wins, the higher Origin breaks ties (see Compare), and the
// outcome is the winner's value or tombstone. The losing version is
// discarded from the current state; Loser tells the engine which one to
// record in the audit trail. LWW suits values that are replaced whole and
// never merged (media, which is content-addressed, and anything without a
// richer strategy).
type LWW struct{}

var _ core.Resolver = LWW{}

// Resolve returns the winner's value (a copy) or tombstone.
func (LWW) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	w := c.Local
	if Compare(c.Remote, c.Local) > 0 {
		w = c.Remote
	}
	if w.Deleted {
		return core.Resolution{Deleted: true}, nil
	}
	return core.Resolution{Value: cloneValue(w.Value)}, nil
}

// Loser reports which side of c last-writer-wins discards.
func (LWW) Loser(c core.Conflict) Side {
	if Compare(c.Remote, c.Local) > 0 {
		return Local
	}
	return Remote
}

// cloneValue copies v, keeping an empty value non-nil so that a live empty
// value is not mistaken for an absent one.
func cloneValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return slices.Clone(v)
}

// Manual defers every conflict to the host: Resolve returns
// Resolution{Manual: true}, the engine keeps the local version and queues
// the conflict until the host settles it.
type Manual struct{}

var _ core.Resolver = Manual{}

// Resolve returns Resolution{Manual: true}.
func (Manual) Resolve(context.Context, core.Conflict) (core.Resolution, error) {
	return core.Resolution{Manual: true}, nil
}
