package audit

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/devicemesh/federation/core"
)

// Schema is the definition of the audit table, identical to the one the
// libSQL store's migrations create; EnsureSchema creates it when missing.
const Schema = `CREATE TABLE IF NOT EXISTS audit (
			seq       INTEGER PRIMARY KEY,
			at        INTEGER NOT NULL,
			kind      TEXT    NOT NULL,
			device    BLOB,
			detail    BLOB,
			prev_hash BLOB    NOT NULL,
			hash      BLOB    NOT NULL
		)`

// EnsureSchema creates the audit table in db unless it exists.
// On a node's store file the libSQL store's migrations create it; call
// EnsureSchema only after the store has opened the file, or on a database
// the store does not manage (its versioned migration would otherwise find
// the table already there).
func EnsureSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("audit schema: %w", err)
	}
	return nil
}

// SQL is the Backend over the audit table of a libSQL (or any SQLite
// dialect) database. It is safe for concurrent use; uniqueness of seq is
// enforced by the table's primary key.
type SQL struct {
	db *sql.DB
}

var _ Backend = (*SQL)(nil)

// NewSQL returns a backend over db's audit table, which must exist (see
// EnsureSchema). The caller keeps ownership of db.
func NewSQL(db *sql.DB) *SQL { return &SQL{db: db} }

const columns = `seq, at, kind, device, detail, prev_hash, hash`

// Last implements Backend.
func (s *SQL) Last(ctx context.Context) (Entry, bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM audit ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return Entry{}, false, fmt.Errorf("audit last: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return Entry{}, false, rowsErr(rows, "audit last")
	}
	e, err := scanEntry(rows)
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, rowsErr(rows, "audit last")
}

// Insert implements Backend.
func (s *SQL) Insert(ctx context.Context, e Entry) error {
	var dev any
	if !e.Device.IsZero() {
		dev = e.Device[:]
	}
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO audit(`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		int64(e.Seq), e.At.UnixMilli(), e.Kind.String(), dev, EncodeDetail(e.Detail), e.PrevHash[:], e.Hash[:])
	if err != nil {
		return fmt.Errorf("audit insert seq %d: %w", e.Seq, err)
	}
	return nil
}

// Scan implements Backend.
func (s *SQL) Scan(ctx context.Context, fn func(Entry) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM audit ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("audit scan: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rowsErr(rows, "audit scan")
}

// Query implements Backend. Time, device, kind and paging filters run in
// SQL; entries whose rows do not decode are reported as a *TamperError.
func (s *SQL) Query(ctx context.Context, f Filter) ([]Entry, error) {
	var (
		where = []string{"seq > ?"}
		args  = []any{int64(f.AfterSeq)}
	)
	if !f.From.IsZero() {
		where, args = append(where, "at >= ?"), append(args, f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		where, args = append(where, "at < ?"), append(args, f.To.UnixMilli())
	}
	if !f.Device.IsZero() {
		where, args = append(where, "device = ?"), append(args, f.Device[:])
	}
	if len(f.Kinds) > 0 {
		marks := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			marks[i] = "?"
			args = append(args, k.String())
		}
		where = append(where, "kind IN ("+strings.Join(marks, ",")+")")
	}
	q := `SELECT ` + columns + ` FROM audit WHERE ` + strings.Join(where, " AND ") + ` ORDER BY seq`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rowsErr(rows, "audit query")
}

func rowsErr(rows *sql.Rows, what string) error {
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// scanEntry decodes one row. Values that cannot come from Append (wrong
// lengths, unknown kind, malformed detail) mean the row was tampered with.
func scanEntry(rows *sql.Rows) (Entry, error) {
	var (
		seq, at                        sql.NullInt64
		kind                           sql.NullString
		dev, detail, prevHash, hashCol []byte
	)
	if err := rows.Scan(&seq, &at, &kind, &dev, &detail, &prevHash, &hashCol); err != nil {
		return Entry{}, fmt.Errorf("audit read row: %w", err)
	}
	e := Entry{Seq: uint64(seq.Int64), At: time.UnixMilli(at.Int64).UTC()}
	bad := func(reason string) (Entry, error) {
		return Entry{}, &TamperError{Seq: e.Seq, Reason: reason}
	}
	if !seq.Valid || seq.Int64 < 1 || !at.Valid || !kind.Valid {
		return bad("missing column value")
	}
	k, err := ParseKind(kind.String)
	if err != nil {
		return bad("unknown kind")
	}
	e.Kind = k
	switch len(dev) {
	case 0:
	case len(core.DeviceID{}):
		copy(e.Device[:], dev)
	default:
		return bad("device of wrong length")
	}
	if e.Detail, err = DecodeDetail(detail); err != nil {
		return bad("malformed detail")
	}
	if len(prevHash) != HashSize || len(hashCol) != HashSize {
		return bad("hash of wrong length")
	}
	copy(e.PrevHash[:], prevHash)
	copy(e.Hash[:], hashCol)
	return e, nil
}
