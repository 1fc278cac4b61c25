package conflict

import (
	"fmt"

	"github.com/devicemesh/federation/core"
)

// joinFunc merges two encoded CRDT states into the canonical encoding of
// their join. It must be commutative, associative and idempotent on the
// decoded states.
type joinFunc func(a, b []byte) ([]byte, error)

// resolveJoin settles a conflict for a CRDT-backed strategy. The outcome
// depends only on the two values, never on which side is local nor on the
// records' stamps, so every device reaches the same bytes whatever order the
// versions meet in.
//
// A tombstone counts as the empty state (the lattice's bottom): an update
// concurrent with a deletion survives, with everything the deleted version
// held, and only two concurrent deletions give a deletion. This keeps the
// merge a join (so convergent) and never loses data a device wrote without
// seeing the deletion. The surviving side is re-encoded through the join,
// which validates it and makes it canonical.
func resolveJoin(what string, c core.Conflict, join joinFunc) (core.Resolution, error) {
	a, b := c.Local, c.Remote
	switch {
	case a.Deleted && b.Deleted:
		return core.Resolution{Deleted: true}, nil
	case a.Deleted:
		a = b
	case b.Deleted:
		b = a
	}
	v, err := join(a.Value, b.Value)
	if err != nil {
		return core.Resolution{}, fmt.Errorf("%s merge of %s/%q: %w", what, c.Collection, c.Key, err)
	}
	return core.Resolution{Value: v}, nil
}

// malformed wraps a decoder error with ErrMalformed.
func malformed(err error) error { return fmt.Errorf("%w: %w", ErrMalformed, err) }
