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
// concurrent with a deletion survives, and only two concurrent deletions
// give a deletion. For a Remover the engine deletes a live record by
// writing its removal instead, so that a tombstone never replaces content
// (see the package documentation, Deletions in join collections). The
// surviving side is re-encoded through the join, which validates it and
// makes it canonical.
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

// Remover is implemented by the strategies whose record deletion is an
// observed removal: instead of a tombstone, the engine writes Remove(old),
// the current value with everything it holds removed, which later merges
// keep removed. A deletion then removes exactly what its writer had seen,
// and additions it had not seen survive it, whatever order the versions
// meet in (a tombstone, the join's bottom, cannot do both: see the package
// documentation).
type Remover interface {
	// Remove returns value old (never a tombstone) with every element it
	// holds removed as of ts by dev. It fails with ErrMalformed for a value
	// it cannot decode.
	Remove(old []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error)
}

// RemoverFor returns r's Remover for collection, looking through a
// Registry, and false when the collection's deletions are tombstones.
func RemoverFor(r core.Resolver, collection string) (Remover, bool) {
	if g, ok := r.(*Registry); ok {
		r = g.Resolver(collection)
	}
	rm, ok := r.(Remover)
	return rm, ok
}

// PreparerFor returns r's Preparer for collection, looking through a
// Registry, and false when the collection's writes are committed as given.
func PreparerFor(r core.Resolver, collection string) (Preparer, bool) {
	if g, ok := r.(*Registry); ok {
		r = g.Resolver(collection)
	}
	p, ok := r.(Preparer)
	return p, ok
}
