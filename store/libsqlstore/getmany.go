package libsqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/devicemesh/federation/core"
)

// getManyChunk bounds the keys bound into one query (SQLite's variable
// limit is far above it).
const getManyChunk = 500

var _ core.ManyGetter = (*Store)(nil)

// GetMany implements core.ManyGetter: it returns the current versions (tombstones included) of those keys
// of coll that exist, keyed by key; absent keys are simply missing from the
// map. It reads in a few queries instead of one per key, for callers that
// look up a whole batch (applying a peer's changes). The returned records
// belong to the caller. Safe for concurrent use.
func (s *Store) GetMany(ctx context.Context, coll string, keys []string) (map[string]core.Record, error) {
	if err := s.alive(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]core.Record, len(keys))
	args := make([]any, 0, min(len(keys), getManyChunk))
	for i := 0; i < len(keys); i += getManyChunk {
		chunk := keys[i:min(i+getManyChunk, len(keys))]
		args = args[:0]
		for _, k := range chunk {
			args = append(args, appendCK(nil, coll, k))
		}
		q := recordSelect + "WHERE r.ck IN (?" + strings.Repeat(", ?", len(chunk)-1) + ")"
		if err := s.getManyQuery(ctx, q, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) getManyQuery(ctx context.Context, q string, args []any, out map[string]core.Record) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return s.wrapErr("get many", err)
	}
	defer rows.Close()
	for rows.Next() {
		raw, err := scanRecord(rows)
		if err != nil {
			return s.wrapErr("get many", err)
		}
		r, err := s.record(raw)
		if err != nil {
			return fmt.Errorf("get many: %w", err)
		}
		out[r.Key] = r
	}
	if err := rows.Err(); err != nil {
		return s.wrapErr("get many", err)
	}
	return nil
}
