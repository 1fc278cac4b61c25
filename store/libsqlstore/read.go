package libsqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/devicemesh/federation/core"
)

// Scan and Changes read in pages so that neither a long range nor a slow
// callback holds a read transaction or unbounded memory: a page ends after
// pageRows rows or once pageBytes of values were read.
const (
	pageRows  = 256
	pageBytes = 8 << 20
)

// recordSelect selects a record's current version: the record row and,
// when it refers to one, the changelog row holding the version.
const recordSelect = `SELECT r.ck, r.deleted, r.ref, r.meta, c.id, c.meta,
	CASE WHEN r.ref IS NULL THEN r.value ELSE c.value END,
	CASE WHEN r.ref IS NULL THEN r.kind ELSE c.flags END
	FROM records r LEFT JOIN changelog c ON c.id = r.ref `

// rawRecord is a record row before decoding.
type rawRecord struct {
	ck          []byte
	deleted     bool
	ref, id     sql.NullInt64
	meta, cmeta []byte
	value       []byte
	hasValue    bool
	flags       int64 // kind flags (flagStub, flagSummary)
}

func scanRecord(rows *sql.Rows) (rawRecord, error) {
	var r rawRecord
	var value sql.RawBytes
	var flags sql.NullInt64
	if err := rows.Scan(&r.ck, &r.deleted, &r.ref, &r.meta, &r.id, &r.cmeta, &value, &flags); err != nil {
		return r, err
	}
	r.flags = flags.Int64
	r.hasValue = value != nil
	if r.hasValue {
		r.value = append(make([]byte, 0, len(value)), value...)
	}
	return r, nil
}

// record decodes a raw row into a core.Record.
func (s *Store) record(raw rawRecord) (core.Record, error) {
	var r core.Record
	var err error
	if r.Collection, r.Key, err = splitCK(raw.ck); err != nil {
		return r, err
	}
	r.Deleted = raw.deleted
	var ctx []byte
	switch {
	case raw.ref.Valid && !raw.id.Valid:
		return r, fmt.Errorf("%w: version of %s/%q missing from the changelog", core.ErrCorrupt, r.Collection, r.Key)
	case raw.ref.Valid:
		m, err := parseChangeMeta(raw.cmeta)
		if err != nil {
			return r, err
		}
		r.Timestamp, r.Seq, ctx = m.ts, uint64(raw.id.Int64&seqMask), m.ctx
		if r.Origin, err = s.dict.device(raw.id.Int64 >> seqBits); err != nil {
			return r, err
		}
	default:
		m, err := parseRecordMeta(raw.meta)
		if err != nil {
			return r, err
		}
		r.Timestamp, r.Seq, ctx = m.ts, m.seq, m.ctx
		if r.Origin, err = s.dict.device(m.origin); err != nil {
			return r, err
		}
	}
	if r.Context, err = s.dict.decodeContext(ctx); err != nil {
		return r, err
	}
	switch {
	case r.Deleted:
	case !raw.hasValue:
		return r, fmt.Errorf("%w: value of %s/%q missing", core.ErrCorrupt, r.Collection, r.Key)
	case raw.flags&flagStub != 0:
		return r, setKind(&r, raw.flags, raw.value)
	default:
		r.Value = raw.value
	}
	r.Summary = raw.flags&flagSummary != 0
	return r, nil
}

// Get implements core.RecordReader.
func (s *Store) Get(ctx context.Context, coll, key string) (core.Record, error) {
	if err := s.alive(ctx); err != nil {
		return core.Record{}, err
	}
	rows, err := s.db.QueryContext(ctx, recordSelect+"WHERE r.ck = ?", appendCK(nil, coll, key))
	if err != nil {
		return core.Record{}, s.wrapErr("get", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return core.Record{}, s.wrapErr("get", err)
		}
		return core.Record{}, fmt.Errorf("get %s/%q: %w", coll, key, core.ErrNotFound)
	}
	raw, err := scanRecord(rows)
	if err != nil {
		return core.Record{}, s.wrapErr("get", err)
	}
	r, err := s.record(raw)
	if err != nil {
		return core.Record{}, fmt.Errorf("get %s/%q: %w", coll, key, err)
	}
	return r, nil
}

// Scan implements core.RecordReader. It reads in pages and calls fn with
// no database resources held, so fn may take its time and read the store.
func (s *Store) Scan(ctx context.Context, coll string, kr core.KeyRange, fn func(core.Record) error) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	lo, hi, ok := bounds(kr)
	if !ok {
		return nil
	}
	prefix := appendCK(nil, coll, "")
	lo = append(slices.Clone(prefix), lo...)
	if hi != nil {
		hi = append(slices.Clone(prefix), hi...)
	} else {
		hi = prefixEnd(string(prefix))
	}
	sent, inclusive := 0, true
	for {
		n := pageRows
		if kr.Limit > 0 {
			n = min(n, kr.Limit-sent)
		}
		page, more, err := s.scanPage(ctx, coll, lo, inclusive, hi, kr.IncludeDeleted, n)
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		sent += len(page)
		if !more || len(page) == 0 || (kr.Limit > 0 && sent >= kr.Limit) {
			return nil
		}
		lo, inclusive = appendCK(nil, coll, page[len(page)-1].Key), false
	}
}

// scanPage reads up to n records of coll from lo (inclusive or not) to hi
// (nil: unbounded). more reports that the range may hold further records.
func (s *Store) scanPage(ctx context.Context, coll string, lo []byte, inclusive bool, hi []byte, deleted bool, n int) (page []core.Record, more bool, err error) {
	if err := s.alive(ctx); err != nil {
		return nil, false, err
	}
	q := recordSelect + "WHERE r.ck > ?"
	if inclusive {
		q = recordSelect + "WHERE r.ck >= ?"
	}
	args := []any{lo}
	if hi != nil {
		q += " AND r.ck < ?"
		args = append(args, hi)
	}
	if !deleted {
		q += " AND NOT r.deleted"
	}
	q += fmt.Sprintf(" ORDER BY r.ck LIMIT %d", n)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, s.wrapErr("scan", err)
	}
	defer rows.Close()
	var raws []rawRecord
	size := 0
	for rows.Next() {
		raw, err := scanRecord(rows)
		if err != nil {
			return nil, false, s.wrapErr("scan", err)
		}
		raws = append(raws, raw)
		if size += len(raw.value) + len(raw.ck); size >= pageBytes {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.wrapErr("scan", err)
	}
	page = make([]core.Record, 0, len(raws))
	for _, raw := range raws {
		r, err := s.record(raw)
		if err != nil {
			return nil, false, fmt.Errorf("scan %s: %w", coll, err)
		}
		if r.Collection != coll {
			return nil, false, fmt.Errorf("scan %s: %w: row of collection %q", coll, core.ErrCorrupt, r.Collection)
		}
		page = append(page, r)
	}
	return page, len(raws) == n || size >= pageBytes, nil
}

// bounds turns a KeyRange into [lo, hi) over key bytes (hi nil: no upper
// bound); ok is false when the range is empty.
func bounds(kr core.KeyRange) (lo, hi []byte, ok bool) {
	lo = []byte(max(kr.Start, kr.Prefix))
	if kr.End != "" {
		hi = []byte(kr.End)
	}
	if pe := prefixEnd(kr.Prefix); pe != nil && (hi == nil || string(pe) < string(hi)) {
		hi = pe
	}
	if hi != nil && string(lo) >= string(hi) {
		return nil, nil, false
	}
	return lo, hi, true
}

// prefixEnd returns the smallest key above every key with prefix p, or nil
// when there is none (p empty or all 0xff bytes).
func prefixEnd(p string) []byte {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}

// Changes implements core.Changelog. Like Scan it reads in pages and calls
// fn with no database resources held.
func (s *Store) Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	idx, ok := s.dict.index(origin)
	if !ok || after >= maxSeq {
		return nil
	}
	sent := 0
	for {
		n := pageRows
		if limit > 0 {
			n = min(n, limit-sent)
		}
		page, more, err := s.changesPage(ctx, origin, idx, after, n)
		if err != nil {
			return err
		}
		for _, c := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(c); err != nil {
				return err
			}
		}
		sent += len(page)
		if !more || len(page) == 0 || (limit > 0 && sent >= limit) {
			return nil
		}
		after = page[len(page)-1].Seq
	}
}

func (s *Store) changesPage(ctx context.Context, origin core.DeviceID, idx int64, after uint64, n int) (page []core.Change, more bool, err error) {
	if err := s.alive(ctx); err != nil {
		return nil, false, err
	}
	page, more, err = s.changesPageOwn(ctx, origin, idx, after, n)
	if !errors.Is(err, errRawUnavailable) {
		return page, more, err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, false, s.wrapErr("changes", err)
	}
	defer conn.Close()
	size := 0
	err = conn.Raw(func(dc any) error {
		page, size, err = s.changesPageRaw(ctx, dc, origin, idx, after, n)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return page, len(page) == n || size >= pageBytes, nil
}

// changesPageRaw reads a page of changes through the driver's connection
// dc, below database/sql: the changelog is the hot read of a sync (every
// change sent), and database/sql would copy each value once more, since it
// must assume that a driver reuses the buffers it returns. go-libsql does
// not: each blob it returns is a new Go slice (C.GoBytes), so a change keeps
// the value the driver read (TestChangesValuesDoNotAlias checks it). It
// returns the page and the bytes of values and keys read.
func (s *Store) changesPageRaw(ctx context.Context, dc any, origin core.DeviceID, idx int64, after uint64, n int) ([]core.Change, int, error) {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, 0, fmt.Errorf("changes: driver connection %T cannot query", dc)
	}
	rows, err := q.QueryContext(ctx, fmt.Sprintf(`SELECT id, ck, flags, meta, value
		FROM changelog WHERE id > ? AND id <= ? ORDER BY id LIMIT %d`, n), []driver.NamedValue{
		{Ordinal: 1, Value: changeID(idx, after)},
		{Ordinal: 2, Value: changeID(idx, maxSeq)},
	})
	if err != nil {
		return nil, 0, s.wrapErr("changes", err)
	}
	defer rows.Close()
	if cols := len(rows.Columns()); cols != 5 {
		return nil, 0, fmt.Errorf("%w: changes: %d columns", core.ErrCorrupt, cols)
	}
	dest := make([]driver.Value, 5)
	page := make([]core.Change, 0, min(n, 8)) // often one change: the sender reads after each commit
	size := 0
	for {
		if err := rows.Next(dest); err == io.EOF {
			break
		} else if err != nil {
			return nil, 0, s.wrapErr("changes", err)
		}
		id, ok1 := dest[0].(int64)
		ck, ok2 := dest[1].([]byte)
		flags, ok3 := dest[2].(int64)
		meta, ok4 := dest[3].([]byte)
		value, ok5 := dest[4].([]byte)
		if !ok1 || !ok2 || !ok3 || !ok4 || (!ok5 && dest[4] != nil) {
			return nil, 0, fmt.Errorf("%w: changes: row types %T %T %T %T %T", core.ErrCorrupt, dest[0], dest[1], dest[2], dest[3], dest[4])
		}
		var full bool
		if page, size, full, err = s.addChange(page, size, origin, id, flags, ck, meta, value); err != nil || full {
			return page, size, err
		}
	}
	return page, size, nil
}

// addChange decodes a changelog row of origin onto page, and returns the
// page, the bytes of keys and values read so far, and whether that makes
// the page full (pageBytes).
func (s *Store) addChange(page []core.Change, size int, origin core.DeviceID, id, flags int64, ck, meta, value []byte) ([]core.Change, int, bool, error) {
	c, err := s.change(origin, id, flags, ck, meta, value)
	if err != nil {
		return nil, 0, false, fmt.Errorf("changes of %s: %w", origin.Short(), err)
	}
	size += len(value) + len(ck)
	return append(page, c), size, size >= pageBytes, nil
}

// change decodes a changelog row of origin.
func (s *Store) change(origin core.DeviceID, id, flags int64, ck, meta, value []byte) (core.Change, error) {
	var c core.Change
	var err error
	if c.Collection, c.Key, err = splitCK(ck); err != nil {
		return c, err
	}
	m, err := parseChangeMeta(meta)
	if err != nil {
		return c, err
	}
	if c.Context, err = s.dict.decodeContext(m.ctx); err != nil {
		return c, err
	}
	c.Origin, c.Seq, c.Timestamp = origin, uint64(id&seqMask), m.ts
	c.TxnFirst, c.TxnLen = m.first, uint32(m.length)
	c.Deleted = flags&flagDeleted != 0
	switch {
	case c.Deleted:
	case value == nil:
		return c, fmt.Errorf("%w: value of change %d missing", core.ErrCorrupt, c.Seq)
	case flags&flagStub != 0:
		return c, setKind(&c.Record, flags, value)
	default:
		c.Value = value
	}
	c.Summary = flags&flagSummary != 0
	return c, nil
}

// VersionVector implements core.Changelog. It is served from memory.
func (s *Store) VersionVector(ctx context.Context) (core.VersionVector, error) {
	if err := s.alive(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.vv.Clone(), nil
}

func (s *Store) loadVersionVector(ctx context.Context) (core.VersionVector, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT origin, seq FROM vv")
	if err != nil {
		return nil, fmt.Errorf("load version vector: %w", err)
	}
	defer rows.Close()
	vv := core.VersionVector{}
	for rows.Next() {
		var idx, seq int64
		if err := rows.Scan(&idx, &seq); err != nil {
			return nil, fmt.Errorf("load version vector: %w", err)
		}
		id, err := s.dict.device(idx)
		if err != nil || seq < 0 {
			return nil, fmt.Errorf("load version vector: %w", core.ErrCorrupt)
		}
		vv[id] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load version vector: %w", err)
	}
	return vv, nil
}

// Meta implements core.Store.
func (s *Store) Meta(ctx context.Context, key string) ([]byte, error) {
	if err := s.alive(ctx); err != nil {
		return nil, err
	}
	var v []byte
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", []byte(key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("meta %q: %w", key, core.ErrNotFound)
	}
	if err != nil {
		return nil, s.wrapErr("meta", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// SetMeta implements core.Store.
func (s *Store) SetMeta(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.alive(ctx); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", []byte(key), value)
	if err != nil {
		return s.wrapErr("set meta", err)
	}
	return nil
}

// Stats implements core.Store. Changes is summed over the vv table, where
// seq - floor is the number of changelog rows an origin holds (advance and
// truncateStep keep it so), not counted row by row.
func (s *Store) Stats(ctx context.Context) (core.StoreStats, error) {
	if err := s.alive(ctx); err != nil {
		return core.StoreStats{}, err
	}
	var st core.StoreStats
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM records WHERE NOT deleted),
		(SELECT count(*) FROM records WHERE deleted),
		(SELECT coalesce(sum(seq - floor), 0) FROM vv)`).Scan(&st.Records, &st.Tombstones, &st.Changes)
	if err != nil {
		return st, s.wrapErr("stats", err)
	}
	return st, nil
}
