package libsqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"

	// Registers the "libsql" database/sql driver.
	_ "github.com/tursodatabase/go-libsql"
)

var _ core.SQLStore = (*Store)(nil)

// Options tunes Open. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs. nil discards them.
	Logger *slog.Logger
	// FullSync selects synchronous=FULL: every commit fsyncs the WAL, so it
	// survives power loss and kernel crashes, not only process crashes.
	// false (synchronous=NORMAL) is durable against process crashes only.
	FullSync bool
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection before failing. 0 means 5 seconds.
	BusyTimeout time.Duration
	// MaxReaders caps the pool of reading connections. 0 means 8.
	MaxReaders int
	// CheckpointBytes is how much the store commits before a background
	// goroutine copies the WAL back into the database file (see
	// checkpoint.go: commits never checkpoint inline). 0 means 4 MiB.
	CheckpointBytes int
	// PageSize is the page size of a database file this store creates (a
	// power of two from 512 to 65536); an existing file keeps its own.
	// 0 means 16 KiB: the records a companion keeps (messages, embeddings
	// of a few KiB, profile documents) fit several to a page instead of
	// spilling into overflow pages, and a first sync of a million 1 KiB
	// records runs about a fifth faster than with SQLite's 4 KiB (fedbench
	// initial-sync). A small commit writes larger WAL frames in exchange.
	PageSize int
	// MaxWALBytes bounds the WAL file: once it grows past this size, the
	// writer completes a checkpoint itself so that the next write restarts
	// the WAL, which truncates the file to half this size. 0 means 64 MiB.
	MaxWALBytes int
	// Key, when set, encrypts the file and its WAL (see Encryption in the
	// package documentation): KeySize random bytes, which every later Open
	// of the file must be given. A wrong key, a key for a file that is not
	// encrypted or none for one that is fails with an error wrapping
	// core.ErrWrongKey; Rekey changes the key. nil leaves the file plain.
	Key []byte
}

// defaultPageSize is Options.PageSize's default.
const defaultPageSize = 16 << 10

// Store is the libSQL-backed core.Store. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	log  *slog.Logger
	path string

	// wmu serialises writes on w, the one writing connection, and guards
	// the scratch buffers used to build statements.
	wmu sync.Mutex
	w   *sql.Conn
	buf commitBuffers
	// prep keeps the writer's full-size INSERTs prepared (prepared.go);
	// noPrep turns it off for good once the driver's connection is not
	// what it expects.
	prep   preparedStmts
	noPrep bool
	// raw reads the changelog on the store's own connections (rawread.go).
	raw *rawReaders

	// mu guards vv, the cached version vector (written under wmu too).
	mu sync.RWMutex
	vv core.VersionVector

	dict *dictionary

	ckpt *checkpointer

	guard    *guard // lock and commit high-water (guard.go); under wmu
	fullSync bool

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open opens the store in the libSQL file at path, creating the file (mode
// 0600) and its directory (0700) when missing, migrates its schema to the
// current version and loads its version vector.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("open store: %w: empty path", core.ErrInvalidArgument)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.MaxReaders <= 0 {
		opts.MaxReaders = 8
	}
	if opts.MaxWALBytes <= 0 {
		opts.MaxWALBytes = defaultMaxWALBytes
	}
	if opts.PageSize == 0 {
		opts.PageSize = defaultPageSize
	}
	if opts.PageSize < 512 || opts.PageSize > 65536 || opts.PageSize&(opts.PageSize-1) != 0 {
		return nil, fmt.Errorf("open store: %w: page size %d is not a power of two from 512 to 65536", core.ErrInvalidArgument, opts.PageSize)
	}
	if err := checkKey(opts.Key); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	existed := hasData(path)
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	g, err := acquireGuard(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := matchKey(path, opts.Key); err != nil {
		_ = g.release()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	files := storeFiles(path)
	db, err := openDB(path, opts)
	if err != nil {
		_ = g.release()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, log: opts.Logger, path: path, dict: newDictionary(), guard: g, fullSync: opts.FullSync}
	s.raw = newRawReaders(path, opts)
	s.ckpt = newCheckpointer(s, path, opts.CheckpointBytes, opts.MaxWALBytes)
	if err := s.init(ctx, existed); err != nil {
		if s.w != nil {
			_ = s.w.Close()
		}
		s.raw.close()
		_ = db.Close()
		_ = waitReleased(append(files, storeFiles(path)...), releaseTimeout)
		_ = g.release()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// hasData reports whether path is a file with something in it: a store
// that existed, whose failures to open are damage rather than setup.
func hasData(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() > 0
}

// damaged marks err as damage of the file (core.ErrDamaged) when it comes
// from a file that existed, or reports corrupt content; a wrong key stays
// a wrong key.
func damaged(existed bool, err error) error {
	if err == nil || errors.Is(err, core.ErrDamaged) || errors.Is(err, core.ErrWrongKey) || !(existed || errors.Is(err, core.ErrCorrupt)) {
		return err
	}
	return fmt.Errorf("%w: %w", core.ErrDamaged, err)
}

func (s *Store) init(ctx context.Context, existed bool) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return damaged(existed, fmt.Errorf("enable WAL: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("enable WAL: journal mode is %q", mode)
	}
	w, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("writer connection: %w", err)
	}
	s.w = w
	if existed {
		if err := s.quickCheck(ctx); err != nil {
			return err
		}
	}
	from, to, err := migrate(ctx, w, migrations())
	if err != nil {
		return damaged(false, err)
	}
	if from != to {
		s.log.Info("store schema migrated", "from", from, "to", to)
	}
	if err := s.dict.load(ctx, s.db); err != nil {
		return damaged(false, err)
	}
	vv, err := s.loadVersionVector(ctx)
	if err != nil {
		return damaged(false, err)
	}
	s.vv = vv
	hw := vvSum(vv)
	dev, ino := fileID(s.path)
	loss, err := s.guard.check(hw, s.fullSync, dev, ino)
	if err != nil {
		return err
	}
	if loss != "" {
		s.log.Warn("store behind its last high-water", "detail", loss)
	}
	if err := s.guard.open(hw, dev, ino); err != nil {
		return err
	}
	return s.ckpt.start(ctx)
}

// quickCheck runs PRAGMA quick_check on the writer and returns an error
// wrapping core.ErrDamaged unless SQLite finds the file sound.
func (s *Store) quickCheck(ctx context.Context) error {
	rows, err := s.w.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return damaged(true, fmt.Errorf("quick check: %w", err))
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return damaged(true, fmt.Errorf("quick check: %w", err))
		}
		if len(msgs) < 10 {
			msgs = append(msgs, fmt.Sprint(v))
		}
	}
	if err := rows.Err(); err != nil {
		return damaged(true, fmt.Errorf("quick check: %w", err))
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	return fmt.Errorf("quick check: %w: %s", core.ErrDamaged, strings.Join(msgs, "; "))
}

// createFile creates path's directory and the file itself when missing,
// readable by the owner only: the store holds personal data and the
// device's private key. SQLite gives its WAL and shared-memory files the
// database file's permissions.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// openDB opens a pool whose every connection carries the per-connection
// pragmas.
func openDB(path string, opts Options) (*sql.DB, error) {
	dsn := "file:" + path
	// go-libsql exports no constructor for a local connector; its driver
	// makes one. Borrow the driver from a throwaway handle.
	probe, err := sql.Open("libsql", dsn)
	if err != nil {
		return nil, err
	}
	drv, ok := probe.Driver().(driver.DriverContext)
	_ = probe.Close()
	if !ok {
		return nil, errors.New("libsql driver has no connector")
	}
	inner, err := drv.OpenConnector(dsn)
	if err != nil {
		return nil, err
	}
	syncMode := "NORMAL"
	if opts.FullSync {
		syncMode = "FULL"
	}
	// The key before anything reads or creates the file.
	c := &connector{inner: inner, keyed: keyPragmas(opts.Key), pragmas: []string{
		// First, so that whichever connection creates the file uses it;
		// a no-op on an existing file.
		fmt.Sprintf("PRAGMA page_size = %d", opts.PageSize),
		fmt.Sprintf("PRAGMA busy_timeout = %d", opts.BusyTimeout.Milliseconds()),
		"PRAGMA synchronous = " + syncMode,
		fmt.Sprintf("PRAGMA journal_size_limit = %d", opts.MaxWALBytes/2), // see checkpoint.go
		// A backstop only (the writer turns its own off): see checkpoint.go.
		fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", backstopPages(opts)),
	}}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(opts.MaxReaders + 1) // +1: the writer
	db.SetMaxIdleConns(opts.MaxReaders + 1)
	return db, nil
}

// backstopPages is the automatic checkpoint threshold of the pooled
// connections, in WAL frames: MaxWALBytes of them, counted in pages of
// PageSize (an existing file may have other pages; zero options count as
// their defaults).
func backstopPages(opts Options) int {
	walBytes, pageSize := opts.MaxWALBytes, opts.PageSize
	if walBytes <= 0 {
		walBytes = defaultMaxWALBytes
	}
	if pageSize <= 0 {
		pageSize = defaultPageSize
	}
	return max(walBytes/pageSize, 1)
}

// connector applies pragmas to every new connection of the pool: first
// the encryption key's (keyed, then a read that checks the key), then the
// others.
type connector struct {
	inner   driver.Connector
	keyed   []string
	pragmas []string
	// handles registers fed_conn_handle (prepared.go) before the pool's
	// first connection. libSQL configures SQLite on the first connection
	// of the process and aborts if SQLite was used before, which the
	// registration does: a first connection is opened and closed first.
	handles sync.Once
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	c.handles.Do(func() {
		if conn, err := c.inner.Connect(ctx); err == nil {
			_ = conn.Close()
			_ = registerConnHandle() // without it, the writer uses libSQL's statements
		}
	})
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("libsql connection cannot run queries")
	}
	for _, p := range c.keyed {
		if err := runPragma(ctx, q, p); err != nil {
			_ = conn.Close()
			// The driver's error quotes the statement: the key.
			return nil, errors.New("set encryption key: refused by SQLite3MC")
		}
	}
	if len(c.keyed) > 0 {
		if err := runPragma(ctx, q, verifyKeyQuery); err != nil {
			_ = conn.Close()
			return nil, wrongKey(err)
		}
	}
	for _, p := range c.pragmas {
		if err := runPragma(ctx, q, p); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return conn, nil
}

// runPragma runs a pragma that may return a row (busy_timeout does, and
// the driver refuses to Exec statements that return rows).
func runPragma(ctx context.Context, q driver.QueryerContext, pragma string) error {
	rows, err := q.QueryContext(ctx, pragma, nil)
	if err != nil {
		return err
	}
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); err != nil {
			_ = rows.Close()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (c *connector) Driver() driver.Driver { return c.inner.Driver() }

// Close releases the native database handle; sql.DB.Close calls it.
func (c *connector) Close() error {
	if cl, ok := c.inner.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// DB implements core.SQLStore: it returns the store's connection pool, for
// the packages of this module that keep their own tables in the same file
// (the device registry, the conflict queue, the audit log; see the package
// documentation). They must
// not write to the store's own tables (records, changelog, vv, devices,
// meta). Every pooled connection has busy_timeout set; a read-modify-write
// that must not interleave with other writers should use WriteTx instead
// of a deferred transaction. The pool is closed by Close.
func (s *Store) DB() *sql.DB { return s.db }

// WriteTx runs fn inside a BEGIN IMMEDIATE transaction on the store's
// writing connection, serialised with Commit and every other writer of the
// store, and commits when fn returns nil (rolls back otherwise). fn must
// use only conn and must not call methods of the store that write.
func (s *Store) WriteTx(ctx context.Context, fn func(ctx context.Context, conn *sql.Conn) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.alive(ctx); err != nil {
		return err
	}
	if err := s.inTx(ctx, func() error { return fn(ctx, s.w) }); err != nil {
		return err
	}
	s.ckpt.committed(ctx, writeTxBytes)
	return nil
}

// writeTxBytes is what a WriteTx is assumed to commit, for checkpoints: a
// few pages.
const writeTxBytes = 16 << 10

// inTx runs fn between BEGIN IMMEDIATE and COMMIT on the writer. Called
// with wmu held.
func (s *Store) inTx(ctx context.Context, fn func() error) error {
	if _, err := s.w.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return s.wrapErr("begin", err)
	}
	if err := fn(); err != nil {
		s.rollback()
		return err
	}
	if _, err := s.w.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		s.rollback()
		return s.wrapErr("commit", err)
	}
	return nil
}

func (s *Store) rollback() {
	if _, err := s.w.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		s.log.Debug("rollback", "err", err)
	}
}

// IntegrityCheck runs PRAGMA integrity_check over the whole file and returns
// an error wrapping core.ErrCorrupt with SQLite's findings unless it reports
// "ok".
func (s *Store) IntegrityCheck(ctx context.Context) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	rows, err := s.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return s.wrapErr("integrity check", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var v any
		if err := rows.Scan(&v); err != nil {
			return s.wrapErr("integrity check", err)
		}
		msgs = append(msgs, fmt.Sprint(v))
	}
	if err := rows.Err(); err != nil {
		return s.wrapErr("integrity check", err)
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	return fmt.Errorf("integrity check: %w: %s", core.ErrCorrupt, strings.Join(msgs, "; "))
}

// Close waits for an in-flight write, copies the whole WAL back into the
// database file (so that the file alone holds everything: a copy of it is
// a complete backup), closes the connections and waits until the driver
// has closed every descriptor on the store's files (release.go), so that
// the same path can be opened again at once. Later calls to any method
// return core.ErrClosed; Close itself is idempotent and returns the first
// call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.raw.close()
		s.ckpt.close()
		s.wmu.Lock()
		files := storeFiles(s.path)
		cerr := s.ckpt.truncate()
		s.prep.release() // before the connection they belong to closes
		werr := s.w.Close()
		s.wmu.Unlock()
		derr := s.db.Close()
		rerr := waitReleased(files, releaseTimeout)
		// Clean only if the database file alone now holds every commit.
		var gerr error
		if cerr == nil && werr == nil && derr == nil && rerr == nil {
			gerr = s.guard.closeClean()
		} else {
			gerr = s.guard.release()
		}
		s.closeErr = errors.Join(cerr, werr, derr, rerr, gerr)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close store: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// alive returns ErrClosed after Close, else ctx's error.
func (s *Store) alive(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("libsqlstore: %w", core.ErrClosed)
	}
	return ctx.Err()
}

// wrapErr adds context to a database error, reporting ErrClosed when the
// store was closed underneath the operation.
func (s *Store) wrapErr(op string, err error) error {
	if s.closed.Load() || errors.Is(err, sql.ErrConnDone) {
		return fmt.Errorf("%s: %w", op, core.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}
