package libsqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
)

// advances returns the entries of b.Advance that raise the version vector
// beyond both vv and the batch's own changes (p.next).
func advances(vv core.VersionVector, b core.Batch, p plan) core.VersionVector {
	out := core.VersionVector{}
	for d, seq := range b.Advance {
		have := max(vv[d], p.next[d])
		if seq > have {
			out[d] = seq
		}
	}
	return out
}

// advance raises origin's version vector entry to seq inside the writer's
// transaction. Its changelog no longer holds a contiguous run of the
// origin's changes, so it is emptied (floor = seq): current versions still
// in it move inline first, so no value is lost.
func (s *Store) advance(ctx context.Context, origin core.DeviceID, seq uint64) error {
	idx, ok := s.dict.index(origin)
	if !ok {
		return fmt.Errorf("advance: %w: device %s not in dictionary", core.ErrCorrupt, origin.Short())
	}
	var floor, have int64
	err := s.w.QueryRowContext(ctx, "SELECT floor, seq FROM vv WHERE origin = ?", idx).Scan(&floor, &have)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return s.wrapErr("advance", err)
	case have > floor:
		lo, hi := changeID(idx, uint64(floor)), changeID(idx, uint64(have))
		if err := s.inlineReferenced(ctx, idx, lo, hi); err != nil {
			return fmt.Errorf("advance: keep current values: %w", err)
		}
		if _, err := s.w.ExecContext(ctx, "DELETE FROM changelog WHERE id > ? AND id <= ?", lo, hi); err != nil {
			return fmt.Errorf("advance: %w", err)
		}
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO vv (origin, seq, floor) VALUES (?, ?, ?)
		ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, floor = excluded.floor`, idx, int64(seq), int64(seq))
	if err != nil {
		return fmt.Errorf("advance: %w", err)
	}
	return nil
}

// Collections implements core.RecordReader: one indexed seek per
// collection, skipping from each collection's first key past its last.
func (s *Store) Collections(ctx context.Context) ([]string, error) {
	if err := s.alive(ctx); err != nil {
		return nil, err
	}
	var out []string
	var from []byte
	for {
		var ck []byte
		err := s.db.QueryRowContext(ctx, "SELECT ck FROM records WHERE ck >= ? ORDER BY ck LIMIT 1", from).Scan(&ck)
		if errors.Is(err, sql.ErrNoRows) {
			slices.Sort(out) // ck orders by name length first
			return out, nil
		}
		if err != nil {
			return nil, s.wrapErr("collections", err)
		}
		coll, _, err := splitCK(ck)
		if err != nil {
			return nil, fmt.Errorf("collections: %w", err)
		}
		out = append(out, coll)
		next := prefixEnd(string(appendCK(nil, coll, "")))
		if next == nil || slices.Equal(next, from) {
			slices.Sort(out)
			return out, nil
		}
		from = next
	}
}
