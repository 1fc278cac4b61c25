package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/core"
)

// Schema is the definition of the device_registry table, identical to the
// one the libSQL store's migrations create (EnsureSchema creates it when
// missing). device_id is the raw 32-byte id, trust_level the TrustLevel's
// number, device_type its String form, last_seen Unix milliseconds (0:
// never), revoked_at and updated_at HLC timestamps.
const Schema = `CREATE TABLE IF NOT EXISTS device_registry (
			device_id   BLOB PRIMARY KEY,
			device_name TEXT    NOT NULL DEFAULT '',
			device_type TEXT    NOT NULL DEFAULT '',
			public_key  BLOB    NOT NULL,
			last_seen   INTEGER NOT NULL DEFAULT 0,
			trust_level INTEGER NOT NULL DEFAULT 0,
			sync_policy BLOB,
			revoked_at  INTEGER,
			updated_at  INTEGER NOT NULL DEFAULT 0
		)`

// EnsureSchema creates the device_registry table in db unless it exists.
// On a node's store file the libSQL store's migrations create it; call
// EnsureSchema only after the store has opened the file, or on a database
// the store does not manage (its versioned migration would otherwise find
// the table already there).
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

// Put implements Store. One UPSERT statement merges with the stored record
// (later last_seen, terminal revocation), so it is atomic without a
// transaction.
func (s *SQL) Put(ctx context.Context, d Device) error {
	d = merge(nil, d)
	var policy any
	if len(d.Policy) > 0 {
		policy = d.Policy
	}
	var revokedAt any
	if d.RevokedAt != 0 {
		revokedAt = int64(d.RevokedAt)
	}
	_, err := s.db.ExecContext(ctx, putSQL(),
		d.ID[:], d.Name, d.Type.String(), d.PublicKey[:], unixMilli(d.LastSeen), int64(d.Trust), policy, revokedAt, int64(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.ID.Short(), err)
	}
	return nil
}

// putSQL is the UPSERT behind Put; a revoked row (trust_level
// TrustRevoked) keeps its trust level and revocation time.
func putSQL() string {
	return fmt.Sprintf(`INSERT INTO device_registry(%[1]s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(device_id) DO UPDATE SET
			device_name = excluded.device_name,
			device_type = excluded.device_type,
			public_key  = excluded.public_key,
			last_seen   = MAX(device_registry.last_seen, excluded.last_seen),
			revoked_at  = CASE WHEN device_registry.trust_level = %[2]d THEN device_registry.revoked_at ELSE excluded.revoked_at END,
			trust_level = CASE WHEN device_registry.trust_level = %[2]d THEN %[2]d ELSE excluded.trust_level END,
			sync_policy = excluded.sync_policy,
			updated_at  = excluded.updated_at`, regColumns, TrustRevoked)
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// Get implements Store.
func (s *SQL) Get(ctx context.Context, id core.DeviceID) (Device, error) {
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+regColumns+` FROM device_registry WHERE device_id = ?`, id[:]))
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
	sortDevices(out)
	return out, nil
}

// Touch implements Store.
func (s *SQL) Touch(ctx context.Context, id core.DeviceID, t time.Time) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE device_registry SET last_seen = MAX(last_seen, ?) WHERE device_id = ?`, t.UnixMilli(), id[:])
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
// ErrMalformed (and so core.ErrCorrupt).
func scanDevice(row rowScanner) (Device, error) {
	var (
		id, key, policy []byte
		name, typ       string
		trust           int64
		lastSeen        int64
		revoked, up     sql.NullInt64
	)
	if err := row.Scan(&id, &name, &typ, &key, &lastSeen, &trust, &policy, &revoked, &up); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Device{}, core.ErrNotFound
		}
		return Device{}, err
	}
	var d Device
	if len(id) != len(d.ID) || len(key) != len(d.PublicKey) {
		return Device{}, fmt.Errorf("%w: device id of %d bytes, key of %d", ErrMalformed, len(id), len(key))
	}
	copy(d.ID[:], id)
	copy(d.PublicKey[:], key)
	if core.DeviceIDFromKey(d.PublicKey) != d.ID && d.PublicKey != (core.PublicKey{}) {
		return Device{}, fmt.Errorf("%w: device %s stored with another device's key", ErrMalformed, d.ID.Short())
	}
	if trust < int64(TrustPending) || trust > int64(TrustRevoked) {
		return Device{}, fmt.Errorf("%w: trust level %d", ErrMalformed, trust)
	}
	d.Trust = TrustLevel(trust)
	var err error
	if d.Type, err = ParseDeviceType(typ); err != nil && typ != "" {
		return Device{}, err
	}
	d.Name = name
	if len(policy) > 0 {
		d.Policy = policy
	}
	if lastSeen != 0 {
		d.LastSeen = time.UnixMilli(lastSeen).UTC()
	}
	d.RevokedAt, d.UpdatedAt = core.Timestamp(revoked.Int64), core.Timestamp(up.Int64)
	return d, nil
}
