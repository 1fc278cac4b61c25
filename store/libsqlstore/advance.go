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
// transaction, in constant time whatever the size of the origin's log.
//
// The changelog keeps the rows it holds: they are real changes of the
// origin, and records may take their current version from them. It simply
// has no row for the sequence numbers skipped, so Changes shows a jump in
// Seq there, exactly as it does below a truncated prefix, and a reader that
// needs a contiguous run sees where it breaks. Since the log of an origin
// need no longer be one contiguous range, the vv row keeps seq - floor equal
// to the number of rows held (which Stats sums): floor rises with seq. For
// a contiguous log that is the old meaning of floor, the highest truncated
// sequence number.
func (s *Store) advance(ctx context.Context, origin core.DeviceID, seq uint64) error {
	idx, ok := s.dict.index(origin)
	if !ok {
		return fmt.Errorf("advance: %w: device %s not in dictionary", core.ErrCorrupt, origin.Short())
	}
	// A new origin holds no rows: floor = seq. A known one skips
	// seq - old seq numbers, which floor absorbs.
	_, err := s.w.ExecContext(ctx, `INSERT INTO vv (origin, seq, floor) VALUES (?, ?, ?)
		ON CONFLICT (origin) DO UPDATE SET floor = floor + (excluded.seq - seq), seq = excluded.seq
		WHERE excluded.seq > seq`, idx, int64(seq), int64(seq))
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
