package libsqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// migration is one schema step; the file's user_version counts the steps
// applied. Steps are append-only: never edit one that has shipped.
type migration []string

// migrations returns the steps that bring an empty file to the current
// schema.
func migrations() []migration {
	return []migration{
		// 1: the store's own tables.
		{
			`CREATE TABLE devices (
			idx INTEGER PRIMARY KEY,
			id  BLOB NOT NULL UNIQUE
		)`,
			`CREATE TABLE changelog (
			id    INTEGER PRIMARY KEY, -- origin index << 40 | seq
			ck    BLOB    NOT NULL,    -- collection and key
			flags INTEGER NOT NULL,    -- 1: tombstone; 2: installed as current
			meta  BLOB    NOT NULL,    -- timestamp, transaction, causal context
			value BLOB
		)`,
			// ref is the changelog id of the current version, or NULL when the
			// version is inline (meta: timestamp, origin, seq, context).
			`CREATE TABLE records (
			ck      BLOB PRIMARY KEY,
			ref     INTEGER,
			deleted INTEGER NOT NULL,
			meta    BLOB,
			value   BLOB
		) WITHOUT ROWID`,
			// Installing a change as the current version as part of its own
			// INSERT spares a second statement on the hot path.
			`CREATE TRIGGER changelog_install AFTER INSERT ON changelog WHEN NEW.flags & 2
		BEGIN
			INSERT OR REPLACE INTO records (ck, ref, deleted)
			VALUES (NEW.ck, NEW.id, NEW.flags & 1);
		END`,
			`CREATE TABLE vv (
			origin INTEGER PRIMARY KEY,
			seq    INTEGER NOT NULL,
			floor  INTEGER NOT NULL DEFAULT 0
		)`,
			`CREATE TABLE meta (
			key   BLOB PRIMARY KEY,
			value BLOB NOT NULL
		) WITHOUT ROWID`,
		},
		// 2: tables of the device registry, the conflict queue and the audit
		// log (package doc).
		{
			`CREATE TABLE device_registry (
			device_id   BLOB PRIMARY KEY,
			device_name TEXT    NOT NULL DEFAULT '',
			device_type TEXT    NOT NULL DEFAULT '',
			public_key  BLOB    NOT NULL,
			last_seen   INTEGER NOT NULL DEFAULT 0,
			trust_level INTEGER NOT NULL DEFAULT 0,
			sync_policy BLOB,
			revoked_at  INTEGER,
			updated_at  INTEGER NOT NULL DEFAULT 0
		)`,
			`CREATE TABLE conflicts (
			id          INTEGER PRIMARY KEY,
			collection  BLOB    NOT NULL,
			key         BLOB    NOT NULL,
			base        BLOB,
			ours        BLOB    NOT NULL,
			theirs      BLOB    NOT NULL,
			created_at  INTEGER NOT NULL,
			resolved_at INTEGER,
			resolution  BLOB
		)`,
			`CREATE INDEX conflicts_open ON conflicts (collection, key) WHERE resolved_at IS NULL`,
			`CREATE TABLE audit (
			seq       INTEGER PRIMARY KEY,
			at        INTEGER NOT NULL,
			kind      TEXT    NOT NULL,
			device    BLOB,
			detail    BLOB,
			prev_hash BLOB    NOT NULL,
			hash      BLOB    NOT NULL
		)`,
		},
		// 3: selective sync: an inline record's stub and summary flags
		// (flagStub, flagSummary; a record that refers to its changelog row
		// takes them from that row's flags).
		{
			`ALTER TABLE records ADD COLUMN kind INTEGER NOT NULL DEFAULT 0`,
		},
	}
}

// SchemaVersion is the schema version this package writes (the file's
// PRAGMA user_version once Open returns).
const SchemaVersion = 3

// migrate applies the steps of ms that conn's file lacks, in one
// transaction, and returns the versions before and after. A file newer than
// ms is refused with core.ErrVersionMismatch.
func migrate(ctx context.Context, conn *sql.Conn, ms []migration) (from, to int, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	var v int64
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, 0, fmt.Errorf("migrate: read version: %w", err)
	}
	from = int(v)
	if from > len(ms) {
		return from, from, fmt.Errorf("migrate: %w: file schema %d is newer than %d", core.ErrVersionMismatch, from, len(ms))
	}
	for i := from; i < len(ms); i++ {
		for _, stmt := range ms[i] {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return from, from, fmt.Errorf("migrate to %d: %w", i+1, err)
			}
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms))); err != nil {
		return from, from, fmt.Errorf("migrate: set version: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return from, from, fmt.Errorf("migrate: %w", err)
	}
	return from, len(ms), nil
}
