package libsqlstore

/*
#include <stdlib.h>

#include "sqlite3api.h"

// fed_change is one changelog row as SQLite holds it: the pointers stay
// valid until the statement steps again or is reset.
typedef struct {
	long long id, flags;
	const void *ck, *meta, *value;
	int ck_len, meta_len, value_len;
	int value_null;
	int bad_types;
} fed_change;

// fed_step steps stmt (SELECT id, ck, flags, meta, value) and, on a row,
// describes it in *c, in one call from Go.
static int fed_step(sqlite3_stmt *stmt, fed_change *c) {
	int rc = sqlite3_step(stmt);
	if (rc != fed_sqlite_row) {
		return rc;
	}
	int tv = sqlite3_column_type(stmt, 4);
	c->bad_types = sqlite3_column_type(stmt, 0) != fed_sqlite_integer || sqlite3_column_type(stmt, 1) != fed_sqlite_blob ||
		sqlite3_column_type(stmt, 2) != fed_sqlite_integer || sqlite3_column_type(stmt, 3) != fed_sqlite_blob ||
		(tv != fed_sqlite_blob && tv != fed_sqlite_null);
	c->id = sqlite3_column_int64(stmt, 0);
	c->flags = sqlite3_column_int64(stmt, 2);
	c->ck = sqlite3_column_blob(stmt, 1);
	c->ck_len = sqlite3_column_bytes(stmt, 1);
	c->meta = sqlite3_column_blob(stmt, 3);
	c->meta_len = sqlite3_column_bytes(stmt, 3);
	c->value_null = tv == fed_sqlite_null;
	c->value = sqlite3_column_blob(stmt, 4);
	c->value_len = sqlite3_column_bytes(stmt, 4);
	return rc;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unsafe"

	"github.com/devicemesh/federation/core"
)

// Reading the changelog (Changes) is the hot read of a sync: every change
// a peer lacks is read once. Through go-libsql, each row costs about 5 µs
// of CPU (the library copies the row, then every column is one more cgo
// call and one more copy). The store therefore reads it on connections of
// its own, opened with SQLite's C API on the same file, in the same
// process, through the same library: one cgo call per row, and the values
// copied once, into page-sized arenas. The connections are read-only
// (query_only), carry the file's key, and are closed before the pool's
// when the store closes. When one cannot be opened the store logs it once
// and reads through go-libsql, as before.

// rawConn is one of the store's own reading connections, with the
// changelog statement prepared.
type rawConn struct {
	db   *C.sqlite3
	stmt *C.sqlite3_stmt
	// hint sizes the first arena buffer of the next page: what the last
	// page copied, so that a sync's full pages take one buffer each;
	// rows, the next page's slice: as many changes as the last page.
	hint, rows int
}

// changesSQL reads a page of one origin's changelog.
const changesSQL = `SELECT id, ck, flags, meta, value FROM changelog WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3`

// rawReaders is the pool of reading connections.
type rawReaders struct {
	path    string
	log     *slog.Logger
	key     []byte
	timeout time.Duration
	max     int

	mu     sync.Mutex
	idle   []*rawConn
	open   int  // connections open, idle or in use
	closed bool // Close was called: no more connections
	failed bool // opening one failed: read through go-libsql
	inUse  sync.WaitGroup
}

// errRawUnavailable reports that the store reads through go-libsql.
var errRawUnavailable = errors.New("own reading connections unavailable")

func newRawReaders(path string, opts Options) *rawReaders {
	return &rawReaders{path: path, log: opts.Logger, key: opts.Key, timeout: opts.BusyTimeout, max: opts.MaxReaders}
}

// get returns an idle connection, or opens one. errRawUnavailable: read
// through go-libsql instead; core.ErrClosed once the store closes.
func (p *rawReaders) get() (*rawConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return nil, fmt.Errorf("libsqlstore: %w", core.ErrClosed)
	case p.failed:
		return nil, errRawUnavailable
	}
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.inUse.Add(1)
		return c, nil
	}
	if p.open >= p.max {
		// As many as the pool's readers are busy: the caller reads
		// through go-libsql this once rather than wait.
		return nil, errRawUnavailable
	}
	c, err := openRaw(p.path, p.key, p.timeout)
	if err != nil {
		p.failed = true
		p.log.Warn("changelog read through go-libsql: own reading connection failed", "err", err)
		return nil, fmt.Errorf("%w: %w", errRawUnavailable, err)
	}
	p.open++
	p.inUse.Add(1)
	return c, nil
}

// put returns c to the pool (bad: close it instead).
func (p *rawReaders) put(c *rawConn, bad bool) {
	p.mu.Lock()
	if bad || p.closed {
		c.close()
		p.open--
	} else {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	p.inUse.Done()
}

// close closes every connection, waiting for those in use (a page read
// each), and refuses new ones.
func (p *rawReaders) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.inUse.Wait()
	for _, c := range idle {
		c.close()
	}
	p.mu.Lock()
	p.open -= len(idle)
	p.mu.Unlock()
}

// openRaw opens a read-only connection on path with key, and prepares
// changesSQL.
func openRaw(path string, key []byte, timeout time.Duration) (*rawConn, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	c := &rawConn{}
	rc := C.sqlite3_open_v2(cpath, &c.db, C.fed_sqlite_open_readwrite|C.fed_sqlite_open_nomutex, nil)
	if rc != 0 {
		err := c.err("open", rc)
		c.close()
		return nil, err
	}
	C.sqlite3_busy_timeout(c.db, C.int(timeout.Milliseconds()))
	for _, q := range keyPragmas(key) {
		if err := c.exec(q); err != nil {
			c.close()
			return nil, errors.New("set encryption key: refused by SQLite3MC") // the error quotes the key
		}
	}
	for _, q := range []string{"PRAGMA query_only = 1", verifyKeyQuery} {
		if err := c.exec(q); err != nil {
			c.close()
			return nil, err
		}
	}
	q := C.CString(changesSQL)
	defer C.free(unsafe.Pointer(q))
	if rc := C.sqlite3_prepare_v2(c.db, q, -1, &c.stmt, nil); rc != 0 {
		err := c.err("prepare", rc)
		c.close()
		return nil, err
	}
	return c, nil
}

// exec runs q, discarding any rows.
func (c *rawConn) exec(q string) error {
	cq := C.CString(q)
	defer C.free(unsafe.Pointer(cq))
	var msg *C.char
	if rc := C.sqlite3_exec(c.db, cq, nil, nil, &msg); rc != 0 {
		err := fmt.Errorf("sqlite error %d", int(rc))
		if msg != nil {
			err = fmt.Errorf("sqlite error %d: %s", int(rc), C.GoString(msg))
			C.sqlite3_free(unsafe.Pointer(msg))
		}
		return err
	}
	return nil
}

// err describes the connection's last error.
func (c *rawConn) err(op string, rc C.int) error { return sqliteErr(c.db, op, rc) }

func (c *rawConn) close() {
	if c.stmt != nil {
		C.sqlite3_finalize(c.stmt)
		c.stmt = nil
	}
	if c.db != nil {
		C.sqlite3_close_v2(c.db)
		c.db = nil
	}
}

// arenaChunk is the largest buffer a page's keys, metadata and values are
// copied into after its first: one allocation per few hundred small values
// instead of one each. The first buffer of a page is as large as what the
// connection's last page copied (a sync reads page after full page), up to
// arenaFirstMax, and at least arenaFirst (the sender often reads one
// change, just committed); each next one is twice the last, up to
// arenaChunk. Growing from the smallest every page allocated about twice
// what a full page holds. A value larger than a quarter of arenaChunk
// gets its own.
const (
	arenaFirst    = 4 << 10
	arenaChunk    = 256 << 10
	arenaFirstMax = 1 << 20
)

// arena hands out copies of C memory from shared buffers. A copy is never
// written again, so the changes of a page may share a buffer: each slice
// is capped at its own length.
type arena struct {
	buf  []byte
	next int // size of the next buffer
	used int // bytes copied into the shared buffers
}

// newArena returns an arena whose first buffer holds about hint bytes.
func newArena(hint int) arena {
	return arena{next: min(hint+hint/16, arenaFirstMax)}
}

func (a *arena) copy(p unsafe.Pointer, n int) []byte {
	if n == 0 {
		return []byte{}
	}
	src := unsafe.Slice((*byte)(p), n)
	if n > arenaChunk/4 {
		return append([]byte(nil), src...)
	}
	a.used += n
	if cap(a.buf)-len(a.buf) < n {
		size := max(a.next, arenaFirst, n)
		a.next = min(size*2, arenaChunk)
		a.buf = make([]byte, 0, size)
	}
	start := len(a.buf)
	a.buf = append(a.buf, src...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// changesPageOwn reads a page of origin's changes after after (at most n,
// or until pageBytes of values and keys were read) on one of the store's
// own connections. errRawUnavailable: read through go-libsql instead.
func (s *Store) changesPageOwn(ctx context.Context, origin core.DeviceID, idx int64, after uint64, n int) ([]core.Change, bool, error) {
	conn, err := s.raw.get()
	if err != nil {
		return nil, false, err
	}
	page, size, err := s.readChanges(ctx, conn, origin, idx, after, n)
	rerr := C.sqlite3_reset(conn.stmt)
	s.raw.put(conn, err != nil || rerr != 0)
	if err != nil {
		return nil, false, err
	}
	return page, len(page) == n || size >= pageBytes, nil
}

func (s *Store) readChanges(ctx context.Context, conn *rawConn, origin core.DeviceID, idx int64, after uint64, n int) ([]core.Change, int, error) {
	st := conn.stmt
	if C.sqlite3_bind_int64(st, 1, C.longlong(changeID(idx, after))) != 0 ||
		C.sqlite3_bind_int64(st, 2, C.longlong(changeID(idx, maxSeq))) != 0 ||
		C.sqlite3_bind_int64(st, 3, C.longlong(n)) != 0 {
		return nil, 0, conn.err("changes: bind", C.sqlite3_extended_errcode(conn.db))
	}
	var (
		row  C.fed_change
		size int
	)
	mem := newArena(conn.hint)
	// Often one change (the sender reads after each commit); during a
	// sync, as many as the last page.
	page := make([]core.Change, 0, min(n, max(8, conn.rows)))
	defer func() { conn.hint, conn.rows = mem.used, len(page) }()
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		rc := C.fed_step(st, &row)
		if rc == C.fed_sqlite_done {
			break
		}
		if rc != C.fed_sqlite_row {
			return nil, 0, s.wrapErr("changes", conn.err("step", rc))
		}
		if row.bad_types != 0 {
			return nil, 0, fmt.Errorf("%w: changes of %s: row types", core.ErrCorrupt, origin.Short())
		}
		ck := mem.copy(row.ck, int(row.ck_len))
		meta := mem.copy(row.meta, int(row.meta_len))
		var value []byte
		if row.value_null == 0 {
			value = mem.copy(row.value, int(row.value_len))
		}
		var full bool
		var err error
		if page, size, full, err = s.addChange(page, size, origin, int64(row.id), int64(row.flags), ck, meta, value); err != nil || full {
			return page, size, err
		}
	}
	return page, size, nil
}
