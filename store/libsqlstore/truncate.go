package libsqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// truncateStep bounds how many changelog rows one Truncate transaction
// removes, so that host writes are never blocked for long.
const truncateStep = 4096

// Truncate implements core.Changelog. Values of current records that still
// live in the removed changelog rows are first moved into the record rows.
// It works in bounded transactions; if it fails midway, the entries already
// removed stay removed (each step is atomic and the count is not returned).
func (s *Store) Truncate(ctx context.Context, acked core.VersionVector) (int64, error) {
	if err := s.alive(ctx); err != nil {
		return 0, err
	}
	var total int64
	for _, origin := range acked.Devices() {
		for {
			n, done, err := s.truncateStep(ctx, origin, acked[origin])
			total += n
			if err != nil {
				return total, fmt.Errorf("truncate: %w", err)
			}
			if done {
				break
			}
		}
	}
	return total, nil
}

// truncateStep removes up to truncateStep entries of origin at or below
// upTo; done reports that none are left.
//
// A step is bounded by the rows it finds, not by a range of sequence
// numbers: an origin's log may skip sequence numbers (see advance), and a
// hole costs no step. floor rises by the rows removed, keeping seq - floor
// the number of rows held.
func (s *Store) truncateStep(ctx context.Context, origin core.DeviceID, upTo uint64) (n int64, done bool, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.alive(ctx); err != nil {
		return 0, true, err
	}
	idx, ok := s.dict.index(origin)
	if !ok {
		return 0, true, nil
	}
	var seq int64
	err = s.w.QueryRowContext(ctx, "SELECT seq FROM vv WHERE origin = ?", idx).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, true, nil // nothing ever logged from this origin
	}
	if err != nil {
		return 0, true, s.wrapErr("read version vector", err)
	}
	lo, end := changeID(idx, 0), changeID(idx, min(upTo, uint64(seq)))
	var found int64
	var last sql.NullInt64
	err = s.w.QueryRowContext(ctx, `SELECT count(*), max(id) FROM
		(SELECT id FROM changelog WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)`, lo, end, truncateStep).Scan(&found, &last)
	if err != nil {
		return 0, true, s.wrapErr("find entries", err)
	}
	if found == 0 {
		return 0, true, nil
	}
	hi := end
	if found == truncateStep {
		hi = last.Int64 // more may follow
	}
	err = s.inTx(ctx, func() error {
		if err := s.inlineReferenced(ctx, idx, lo, hi); err != nil {
			return fmt.Errorf("keep current values: %w", err)
		}
		res, err := s.w.ExecContext(ctx, "DELETE FROM changelog WHERE id > ? AND id <= ?", lo, hi)
		if err != nil {
			return fmt.Errorf("delete entries: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = s.w.ExecContext(ctx, "UPDATE vv SET floor = floor + ? WHERE origin = ?", n, idx)
		return err
	})
	if err != nil {
		return 0, true, err
	}
	return n, hi == end, nil
}

// inlineReferenced copies into their record rows the versions that records
// take from changelog rows with ids in (lo, hi], in batches of bounded size.
// Called inside the writer's transaction.
func (s *Store) inlineReferenced(ctx context.Context, origin, lo, hi int64) error {
	for {
		type moved struct {
			ck, meta, value []byte
			deleted         bool
			kind            int64
		}
		var batch []moved
		// Driven by the changelog's id range, each record found by its key.
		rows, err := s.w.QueryContext(ctx, `SELECT c.id, c.ck, c.meta, c.value, r.deleted, c.flags
			FROM changelog c JOIN records r ON r.ck = c.ck AND r.ref = c.id
			WHERE c.id > ? AND c.id <= ? ORDER BY c.id LIMIT 256`, lo, hi)
		if err != nil {
			return err
		}
		size := 0
		for rows.Next() && size < pageBytes {
			var id int64
			var m moved
			var cmeta []byte
			if err := rows.Scan(&id, &m.ck, &cmeta, &m.value, &m.deleted, &m.kind); err != nil {
				_ = rows.Close()
				return err
			}
			cm, err := parseChangeMeta(cmeta)
			if err != nil {
				_ = rows.Close()
				return err
			}
			m.meta = appendRecordMeta(nil, cm.ts, origin, uint64(id&seqMask), cm.ctx)
			batch = append(batch, m)
			size += len(m.value)
			lo = id
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		for _, m := range batch {
			_, err := s.w.ExecContext(ctx, "UPDATE records SET ref = NULL, meta = ?, value = ?, kind = ? WHERE ck = ?", m.meta, m.value, m.kind&(flagStub|flagSummary), m.ck)
			if err != nil {
				return err
			}
		}
	}
}
