package libsqlstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/devicemesh/federation/core"
)

var _ core.ChangeCounter = (*Store)(nil)

// countChangesSQL tallies a changelog id range per collection in one
// statement, reading no value: length() of a BLOB needs only the row's
// header. The collection is cut out of ck (appendCK: uvarint length, name,
// key). Names are at most core.MaxCollectionLen (128) bytes, so the
// length is one byte below 0x80, found by instr in a table of those bytes,
// or the two bytes 0x80 0x01. A stub's value column holds its envelope and
// a tombstone's is NULL: neither counts as value bytes, as neither has a
// value when Changes reads it.
//
// The lengths are taken in a materialized step before the GROUP BY: its
// sorter would otherwise carry every row's value and take the lengths
// after sorting (about 2 µs a row against 0.8 for 1 KiB values).
var countChangesSQL = `WITH t AS MATERIALIZED (SELECT
		CASE WHEN substr(ck, 1, 1) < x'80'
			THEN substr(ck, 2, instr(x'` + byteTable(0x80) + `', substr(ck, 1, 1)) - 1)
			ELSE substr(ck, 3, 128) END AS coll,
		length(ck) AS ck_len,
		CASE WHEN flags & 5 THEN 0 ELSE length(value) END AS value_len
	FROM changelog WHERE id > ? AND id <= ?)
SELECT coll, count(*), sum(ck_len), sum(value_len) FROM t GROUP BY coll`

// byteTable returns the hex of the bytes 0 to n-1 in order.
func byteTable(n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "%02x", i)
	}
	return sb.String()
}

// CountChanges implements core.ChangeCounter: one aggregate query over the
// range, on a reader.
func (s *Store) CountChanges(ctx context.Context, origin core.DeviceID, after, upTo uint64) (map[string]core.ChangeTally, error) {
	var out map[string]core.ChangeTally
	if err := s.alive(ctx); err != nil {
		return out, err
	}
	idx, ok := s.dict.index(origin)
	if !ok || after >= upTo || after >= maxSeq {
		return out, nil
	}
	upTo = min(upTo, maxSeq)
	rows, err := s.db.QueryContext(ctx, countChangesSQL, changeID(idx, after), changeID(idx, upTo))
	if err != nil {
		return out, s.wrapErr("count changes", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			coll                []byte
			n, ckBytes, valueBy int64
		)
		if err := rows.Scan(&coll, &n, &ckBytes, &valueBy); err != nil {
			return out, s.wrapErr("count changes", err)
		}
		// ck holds the name's length as a uvarint before name and key.
		lenBytes := int64(len(binary.AppendUvarint(nil, uint64(len(coll)))))
		keys := ckBytes - n*lenBytes
		if n <= 0 || keys < n*int64(len(coll)) || valueBy < 0 {
			return out, fmt.Errorf("%w: count changes of %s: bad tally", core.ErrCorrupt, origin.Short())
		}
		if out == nil {
			out = map[string]core.ChangeTally{}
		}
		out[string(coll)] = core.ChangeTally{Changes: uint64(n), Bytes: uint64(keys + valueBy)}
	}
	if err := rows.Err(); err != nil {
		return out, s.wrapErr("count changes", err)
	}
	return out, nil
}
