package conflict

import (
	"context"
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
)

// Chronological merges conversation history. Each value is a crdt.Log
// encoding (build and read it with crdt.DecodeLog, Log.Append, Log.Edit,
// Log.Encode); the outcome is the union of both logs ordered by message
// time, then device, then message id, deduplicated by id, with concurrent
// edits of one message settled last-writer-wins by edit time. An empty
// value is an empty log.
type Chronological struct{}

var _ core.Resolver = Chronological{}

// Resolve merges the two logs; see resolveJoin for tombstones.
func (Chronological) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	return resolveJoin("chronological", c, joinLogs)
}

var _ Remover = Chronological{}

// Remove marks every message of log old deleted as of ts by dev (message
// deletions are edits: a concurrent later edit of one message keeps it).
func (Chronological) Remove(old []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	l, err := crdt.DecodeLog(old)
	if err != nil {
		return nil, fmt.Errorf("chronological remove: %w", malformed(err))
	}
	for _, m := range l.Messages() {
		if m.Deleted {
			continue
		}
		if err := l.Delete(m.ID, ts, dev); err != nil {
			return nil, fmt.Errorf("chronological remove: %w", err)
		}
	}
	return l.Encode(), nil
}

func joinLogs(a, b []byte) ([]byte, error) {
	la, err := crdt.DecodeLog(a)
	if err != nil {
		return nil, malformed(err)
	}
	lb, err := crdt.DecodeLog(b)
	if err != nil {
		return nil, malformed(err)
	}
	la.Merge(lb)
	return la.Encode(), nil
}

// WeightedAverage merges the personality model. Each value is a
// crdt.Average encoding: every device keeps its own versioned contribution
// (weighted sum vector and total weight) and the model is their weighted
// mean; the outcome keeps each device's newest contribution. Values of
// different dimensions give ErrIncompatible. An empty value is an empty
// register.
type WeightedAverage struct{}

var _ core.Resolver = WeightedAverage{}

// Resolve merges the two registers; see resolveJoin for tombstones.
func (WeightedAverage) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	return resolveJoin("weighted average", c, joinAverages)
}

func joinAverages(a, b []byte) ([]byte, error) {
	ra, err := crdt.DecodeAverage(a)
	if err != nil {
		return nil, malformed(err)
	}
	rb, err := crdt.DecodeAverage(b)
	if err != nil {
		return nil, malformed(err)
	}
	if err := ra.Merge(rb); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIncompatible, err)
	}
	return ra.Encode(), nil
}

// Union merges append-only data such as analytics events. Each value is a
// crdt.GSet encoding of opaque event byte strings (see EventsAppend and
// Events); the outcome is the union, less the events removed on either
// side. Deleting a record removes the events it held for good (Remove): an
// event removed once cannot be appended again, so events must be unique.
// An empty value is the empty set.
type Union struct{}

var _ core.Resolver = Union{}

// Resolve returns the union of both sets; see resolveJoin for tombstones.
func (Union) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	return resolveJoin("union", c, joinSets)
}

var _ Remover = Union{}

// Remove returns set old with every event it holds removed.
func (Union) Remove(old []byte, _ core.Timestamp, _ core.DeviceID) ([]byte, error) {
	s, err := crdt.DecodeGSet(old)
	if err != nil {
		return nil, fmt.Errorf("union remove: %w", malformed(err))
	}
	s.RemoveAll()
	return s.Encode(), nil
}

func joinSets(a, b []byte) ([]byte, error) {
	sa, err := crdt.DecodeGSet(a)
	if err != nil {
		return nil, malformed(err)
	}
	sb, err := crdt.DecodeGSet(b)
	if err != nil {
		return nil, malformed(err)
	}
	sa.Merge(sb)
	return sa.Encode(), nil
}

// EventsAppend returns the value old (a Union value; nil for none) with
// events added. Events are opaque and deduplicated by their bytes, so a host
// that may record the same occurrence twice should give each event a unique
// id inside its bytes.
func EventsAppend(old []byte, events ...[]byte) ([]byte, error) {
	s, err := crdt.DecodeGSet(old)
	if err != nil {
		return nil, fmt.Errorf("events append: %w", malformed(err))
	}
	for _, e := range events {
		s.Add(e)
	}
	return s.Encode(), nil
}

// Events returns the events held in a Union value, in ascending byte order.
func Events(value []byte) ([][]byte, error) {
	s, err := crdt.DecodeGSet(value)
	if err != nil {
		return nil, fmt.Errorf("events: %w", malformed(err))
	}
	return s.Elements(), nil
}
