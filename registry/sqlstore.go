package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
)

// Schema is the definition of the device_registry table. The libSQL
// store's migrations create the same table; EnsureSchema creates it when
// missing. device_id is the device id's text form, times are Unix
// milliseconds (last_seen) and HLC timestamps (revoked_at, updated_at),
// trust_level and device_type their String forms.
const Schema = `CREATE TABLE IF NOT EXISTS device_registry(device_id TEXT PRIMARY KEY, device_name TEXT NOT NULL, device_type TEXT NOT NULL, public_key BLOB NOT NULL, last_seen INTEGER, trust_level TEXT NOT NULL, sync_policy BLOB, revoked_at INTEGER, updated_at INTEGER)`

// EnsureSchema creates the device_registry table in db unless it exists.
func EnsureSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("registry schema: %w", err)
	}
	return nil
}

// SQL is the Store over the device_registry table of a libSQL (or any
// SQLite dialect) database. It is safe for concurrent use.
type SQL struct {
	db *sql.DB
}

var _ Store = (*SQL)(nil)

// NewSQL returns a Store over db's device_registry table, which must exist
// (see EnsureSchema). The caller keeps ownership of db.
func NewSQL(db *sql.DB) *SQL { return &SQL{db: db} }

const regColumns = `device_id, device_name, device_type, public_key, last_seen, trust_level, sync_policy, revoked_at, updated_at`

// Put implements Store. It runs in a transaction so that the merge with
// the stored record (last_seen, terminal revocation) is atomic.
func (s *SQL) Put(ctx context.Context, d Device) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put device: %w", err)
	}
	defer tx.Rollback()
	var old *Device
	o, err := scanDevice(tx.QueryRowContext(ctx, `SELECT `+regColumns+` FROM device_registry WHERE device_id = ?`, d.ID.String()))
	switch {
	case err == nil:
		old = &o
	case !errors.Is(err, core.ErrNotFound):
		return fmt.Errorf("put device: %w", err)
	}
	d = merge(old, d)
	var lastSeen, revokedAt any
	if !d.LastSeen.IsZero() {
		lastSeen = d.LastSeen.UnixMilli()
	}
	if d.RevokedAt != 0 {
		revokedAt = int64(d.RevokedAt)
	}
	_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO device_registry(`+regColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID.String(), d.Name, d.Type.String(), d.PublicKey[:], lastSeen, d.Trust.String(), d.Policy, revokedAt, int64(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put device: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put device: %w", err)
	}
	return nil
}

// Get implements Store.
func (s *SQL) Get(ctx context.Context, id core.DeviceID) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+regColumns+` FROM device_registry WHERE device_id = ?`, id.String()))
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id.Short(), err)
	}
	return d, nil
}

// List implements Store.
func (s *SQL) List(ctx context.Context) ([]Device, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+regColumns+` FROM device_registry`)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	// Sort by id bytes, not by the text form stored in the table.
	sortDevices(out)
	return out, nil
}

// Touch implements Store.
func (s *SQL) Touch(ctx context.Context, id core.DeviceID, t time.Time) error {
	ms := t.UnixMilli()
	res, err := s.db.ExecContext(ctx,
		`UPDATE device_registry SET last_seen = MAX(COALESCE(last_seen, ?), ?) WHERE device_id = ?`, ms, ms, id.String())
	if err != nil {
		return fmt.Errorf("touch device %s: %w", id.Short(), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("touch device %s: %w", id.Short(), err)
	}
	if n == 0 {
		return fmt.Errorf("touch device %s: %w", id.Short(), core.ErrNotFound)
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

// scanDevice decodes one row; values Put cannot have written wrap
// core.ErrCorrupt.
func scanDevice(row rowScanner) (Device, error) {
	var (
		id, name, typ, trust  string
		key, policy           []byte
		lastSeen, revoked, up sql.NullInt64
	)
	if err := row.Scan(&id, &name, &typ, &key, &lastSeen, &trust, &policy, &revoked, &up); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Device{}, core.ErrNotFound
		}
		return Device{}, err
	}
	var d Device
	var err error
	if d.ID, err = core.ParseDeviceID(id); err != nil {
		return Device{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if d.Type, err = ParseDeviceType(typ); err != nil {
		return Device{}, err
	}
	if d.Trust, err = ParseTrustLevel(trust); err != nil {
		return Device{}, err
	}
	if len(key) != len(d.PublicKey) {
		return Device{}, fmt.Errorf("%w: public key of %d bytes", ErrMalformed, len(key))
	}
	copy(d.PublicKey[:], key)
	d.Name, d.Policy = name, policy
	if lastSeen.Valid {
		d.LastSeen = time.UnixMilli(lastSeen.Int64).UTC()
	}
	d.RevokedAt, d.UpdatedAt = core.Timestamp(revoked.Int64), core.Timestamp(up.Int64)
	return d, nil
}
