package libsqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/devicemesh/federation/core"
)

// KeySize is the length of an encryption key (Options.Key): 256 bits.
const KeySize = 32

// cipherName is the SQLite3 Multiple Ciphers cipher the store uses (see
// the package documentation: the only one the bundled library accepts).
const cipherName = "aes256cbc"

// sqliteMagic begins every plain SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// checkKey reports an error unless key is absent or KeySize bytes long.
func checkKey(key []byte) error {
	if key != nil && len(key) != KeySize {
		return fmt.Errorf("%w: encryption key of %d bytes, want %d", core.ErrInvalidArgument, len(key), KeySize)
	}
	return nil
}

// keyPragmas returns the statements that give a new connection its key:
// they must run before anything reads the file. The key travels hex
// encoded (SQLite3MC's hexkey takes any bytes); none of it may reach an
// error message or a log.
func keyPragmas(key []byte) []string {
	if key == nil {
		return nil
	}
	return []string{
		"PRAGMA cipher = '" + cipherName + "'",
		"PRAGMA hexkey = '" + hex.EncodeToString(key) + "'",
		// Sorts, statement journals and other temporary files stay in
		// memory: the codec encrypts the database and its WAL, and a
		// temporary file on disk would hold plain pages.
		"PRAGMA temp_store = MEMORY",
	}
}

// fileKind is what the first bytes of a database file say about it.
type fileKind int

const (
	fileEmpty     fileKind = iota // missing or shorter than a header
	filePlain                     // a plain SQLite file
	fileEncrypted                 // a file encrypted by SQLite3MC
	fileUnknown                   // neither: damaged, or not a database
)

// kindOf reads the header of the database file at path. SQLite3MC's
// aes256cbc (not in legacy mode) encrypts the first 16 bytes (the magic)
// and keeps bytes 16 to 23 readable, so that the page size can be read
// before the key is known: bytes 21 to 23 are SQLite's fixed 64, 32, 32.
func kindOf(path string) fileKind {
	f, err := os.Open(path)
	if err != nil {
		return fileEmpty
	}
	defer f.Close()
	var h [24]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return fileEmpty
	}
	switch {
	case string(h[:16]) == sqliteMagic:
		return filePlain
	case h[21] == 64 && h[22] == 32 && h[23] == 32:
		return fileEncrypted
	}
	return fileUnknown
}

// matchKey returns an error wrapping core.ErrWrongKey when the file at
// path is encrypted and key is nil, or plain and key is not.
func matchKey(path string, key []byte) error {
	switch kindOf(path) {
	case filePlain:
		if key != nil {
			return fmt.Errorf("%w: the file is not encrypted but a key was given (Rekey encrypts it)", core.ErrWrongKey)
		}
	case fileEncrypted:
		if key == nil {
			return fmt.Errorf("%w: the file is encrypted and no key was given", core.ErrWrongKey)
		}
	}
	return nil
}

// verifyKeyQuery is a connection's first read, once its key is set.
const verifyKeyQuery = "SELECT count(*) FROM sqlite_schema"

// wrongKey reports the failure of verifyKeyQuery on a connection with a
// key: the key does not decrypt the file, or its first page is damaged,
// which aes256cbc cannot tell apart (it has no authentication tag). A
// wrong key must not look like damage: this comes before every other
// check of the file.
func wrongKey(err error) error {
	return fmt.Errorf("%w (or the file's first page is damaged): %v", core.ErrWrongKey, err)
}

// Rekey changes the encryption key of the store file at path, which no
// Store may have open (it takes the store's lock: core.ErrLocked while
// one does): oldKey opens it (nil: the file is not encrypted), and newKey
// replaces it (nil: decrypt the file). Both are nil or KeySize bytes. A
// wrong oldKey fails with an error wrapping core.ErrWrongKey and leaves
// the file as it was.
//
// SQLite3MC cannot rekey a database in WAL mode, so Rekey copies the WAL
// into the database file, switches the file to a rollback journal,
// rewrites every page under the new key in one transaction, and switches
// back to WAL. A crash midway leaves a hot journal that the next open
// rolls back: the file is then still under the old key. While the rewrite
// runs, that journal holds pages under the old key (plain pages when
// encrypting a plain file); SQLite deletes it at commit. Rewriting takes
// about as long as copying the file.
func Rekey(ctx context.Context, path string, oldKey, newKey []byte) error {
	if err := errors.Join(checkKey(oldKey), checkKey(newKey)); err != nil {
		return fmt.Errorf("rekey: %w", err)
	}
	if !hasData(path) {
		return fmt.Errorf("rekey %s: %w: no database file", path, core.ErrNotFound)
	}
	g, err := acquireGuard(path)
	if err != nil {
		return fmt.Errorf("rekey %s: %w", path, err)
	}
	defer func() { _ = g.release() }()
	if err := matchKey(path, oldKey); err != nil {
		return fmt.Errorf("rekey %s: %w", path, err)
	}
	files := storeFiles(path)
	db, err := openDB(path, Options{Key: oldKey, BusyTimeout: 5 * time.Second, MaxReaders: 1, PageSize: defaultPageSize, MaxWALBytes: defaultMaxWALBytes})
	if err != nil {
		return fmt.Errorf("rekey %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	err = rekey(ctx, db, oldKey, newKey)
	err = errors.Join(err, db.Close(), waitReleased(append(files, storeFiles(path)...), releaseTimeout))
	if err != nil {
		return fmt.Errorf("rekey %s: %w", path, err)
	}
	return nil
}

func rekey(ctx context.Context, db *sql.DB, oldKey, newKey []byte) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var n int64
	if err := conn.QueryRowContext(ctx, verifyKeyQuery).Scan(&n); err != nil {
		return fmt.Errorf("%w: %w", core.ErrDamaged, err)
	}
	if err := journalMode(ctx, conn, "delete"); err != nil {
		return err
	}
	q := "PRAGMA rekey = ''"
	if newKey != nil {
		q = "PRAGMA hexrekey = '" + hex.EncodeToString(newKey) + "'"
	}
	var res string
	if err := conn.QueryRowContext(ctx, q).Scan(&res); err != nil {
		// The driver's error quotes the statement, which holds the key.
		return errors.New("set the new key: refused by SQLite3MC")
	}
	if res != "ok" {
		return fmt.Errorf("set the new key: %q", res)
	}
	return journalMode(ctx, conn, "wal")
}

// journalMode switches conn's database to a journal mode.
func journalMode(ctx context.Context, conn *sql.Conn, mode string) error {
	var got string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode = "+mode).Scan(&got); err != nil {
		return fmt.Errorf("journal mode %s: %w", mode, err)
	}
	if !strings.EqualFold(got, mode) {
		return fmt.Errorf("journal mode %s: still %q", mode, got)
	}
	return nil
}
