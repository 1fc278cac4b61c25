package libsqlstore

/*
#include <stdint.h>
#include <stdlib.h>

// SQLite's own C API (sqlite3api.h): the hot INSERTs run on the writer's
// own SQLite connection through it, below libSQL's statement API (see
// preparedStmts).
#include "sqlite3api.h"

// The few functions of the libSQL C API (the library go-libsql links,
// declared as in its libsql.h) that keep a statement prepared.
typedef const void *fed_conn_t;
typedef const void *fed_stmt_t;

int libsql_prepare(fed_conn_t conn, const char *sql, fed_stmt_t *out_stmt, const char **out_err_msg);
int libsql_bind_int(fed_stmt_t stmt, int idx, long long value, const char **out_err_msg);
int libsql_bind_null(fed_stmt_t stmt, int idx, const char **out_err_msg);
int libsql_bind_blob(fed_stmt_t stmt, int idx, const unsigned char *value, int value_len, const char **out_err_msg);
int libsql_execute_stmt(fed_stmt_t stmt, const char **out_err_msg);
int libsql_reset_stmt(fed_stmt_t stmt, const char **out_err_msg);
void libsql_free_stmt(fed_stmt_t stmt);
void libsql_free_string(const char *ptr);

// Kinds of a bound value.
enum { fed_kind_null = 0, fed_kind_int = 1, fed_kind_blob = 2 };

// fed_exec binds n values (kind, integer, or the blob at off[i] of len[i]
// bytes in buf) to stmt, executes it and clears its parameters, in one
// call from Go. The library copies every value it binds. On failure it
// returns nonzero with *err set (free it with libsql_free_string).
static int fed_exec(fed_stmt_t stmt, int n, const unsigned char *kind, const long long *ival,
		const long long *off, const int *len, const unsigned char *buf, const char **err) {
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		switch (kind[i]) {
		case fed_kind_null:
			rc = libsql_bind_null(stmt, i + 1, err);
			break;
		case fed_kind_int:
			rc = libsql_bind_int(stmt, i + 1, ival[i], err);
			break;
		default:
			rc = libsql_bind_blob(stmt, i + 1, buf + off[i], len[i], err);
		}
	}
	if (rc == 0) {
		rc = libsql_execute_stmt(stmt, err);
	}
	const char *rerr = NULL;
	if (libsql_reset_stmt(stmt, &rerr) != 0 && rerr != NULL) {
		libsql_free_string(rerr);
	}
	return rc;
}

typedef const void *fed_rows_t;
typedef const void *fed_row_t;
int libsql_query(fed_conn_t conn, const char *sql, fed_rows_t *out_rows, const char **out_err_msg);
int libsql_next_row(fed_rows_t rows, fed_row_t *out_row, const char **out_err_msg);
int libsql_get_int(fed_row_t row, int col, long long *out_value, const char **out_err_msg);
void libsql_free_row(fed_row_t row);
void libsql_free_rows(fed_rows_t rows);

// fed_handle_fn is the SQL function fed_conn_handle(): the calling
// connection's own sqlite3 handle, as an integer.
static void fed_handle_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
	(void)argc;
	(void)argv;
	sqlite3_result_int64(ctx, (long long)(intptr_t)sqlite3_context_db_handle(ctx));
}

// fed_autoext defines fed_conn_handle on every new connection. It is
// DIRECTONLY: a trigger or view (the schema of a damaged or hostile file)
// cannot call it.
static int fed_autoext(sqlite3 *db, char **err, const void *api) {
	(void)err;
	(void)api;
	sqlite3_create_function_v2(db, "fed_conn_handle", 0, fed_sqlite_utf8 | fed_sqlite_directonly, 0, fed_handle_fn, 0, 0, 0);
	return 0; // a connection without the function is still a connection
}

// fed_register_autoext registers fed_autoext for the connections opened
// from now on (registering it again is a no-op).
static int fed_register_autoext(void) {
	return sqlite3_auto_extension((void (*)(void))fed_autoext);
}

// fed_sqlite_handle asks conn for its own sqlite3 handle.
static int fed_sqlite_handle(fed_conn_t conn, sqlite3 **out, const char **err) {
	fed_rows_t rows = 0;
	int rc = libsql_query(conn, "SELECT fed_conn_handle()", &rows, err);
	if (rc != 0) {
		return rc;
	}
	fed_row_t row = 0;
	rc = libsql_next_row(rows, &row, err);
	if (rc == 0 && row == 0) {
		rc = -1;
	}
	long long h = 0;
	if (rc == 0) {
		rc = libsql_get_int(row, 0, &h, err);
	}
	*out = (sqlite3 *)(intptr_t)h;
	if (row != 0) {
		libsql_free_row(row);
	}
	libsql_free_rows(rows);
	return rc;
}

// fed_raw_exec binds n values as fed_exec does, without copying the blobs
// (SQLITE_STATIC: they live in buf for the call), steps stmt to its end,
// resets it and clears its bindings, in one call from Go. It returns
// SQLite's result code (0 on success).
static int fed_raw_exec(sqlite3_stmt *stmt, int n, const unsigned char *kind, const long long *ival,
		const long long *off, const int *len, const unsigned char *buf) {
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		switch (kind[i]) {
		case fed_kind_null:
			rc = sqlite3_bind_null(stmt, i + 1);
			break;
		case fed_kind_int:
			rc = sqlite3_bind_int64(stmt, i + 1, ival[i]);
			break;
		default:
			rc = sqlite3_bind_blob(stmt, i + 1, buf + off[i], len[i], 0);
		}
	}
	if (rc == 0) {
		rc = sqlite3_step(stmt);
		if (rc == fed_sqlite_done) {
			rc = 0;
		}
	}
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt); // no pointer into buf outlives the call
	return rc;
}
*/
import "C"

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"unsafe"
)

// errNoNativeConn reports a driver connection whose native handle cannot be
// found (a go-libsql whose connection type changed shape): the store then
// keeps to database/sql.
var errNoNativeConn = errors.New("no native libSQL connection handle")

// errNotPreparable reports arguments the prepared path does not bind
// (anything but int64, bool, []byte and nil); nothing was executed.
var errNotPreparable = errors.New("arguments not supported by the prepared path")

// nativeConn returns the libSQL connection handle of a go-libsql driver
// connection. go-libsql exports no accessor: the handle is the connection
// struct's one field, nativePtr, read through reflection, and anything else
// than a pointer-sized pointer field of that name is refused.
func nativeConn(driverConn any) (unsafe.Pointer, error) {
	v := reflect.ValueOf(driverConn)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: driver connection is %T", errNoNativeConn, driverConn)
	}
	f := v.Elem().FieldByName("nativePtr")
	if !f.IsValid() || (f.Kind() != reflect.Pointer && f.Kind() != reflect.UnsafePointer) || f.Type().Size() != unsafe.Sizeof(uintptr(0)) {
		return nil, fmt.Errorf("%w: %T has no pointer field nativePtr", errNoNativeConn, driverConn)
	}
	p := *(*unsafe.Pointer)(unsafe.Pointer(f.UnsafeAddr()))
	if p == nil {
		return nil, fmt.Errorf("%w: closed connection", errNoNativeConn)
	}
	return p, nil
}

// preparedStmts keeps the writer's hot statements prepared across
// executions: go-libsql prepares every statement it executes anew, which
// costs about as much as a multi-row INSERT's bookkeeping. It is used
// under wmu, inside the writer's transactions, and only through
// sql.Conn.Raw, which holds the writer connection for the call.
//
// The statements are SQLite's own, on the SQLite handle under the
// writer's libSQL connection (fed_conn_handle): libSQL's statement API
// copies every bound value twice (into its own value, then into SQLite's)
// and allocates for each, about 1.7 µs per 1 KiB row; SQLite's binds the
// values where they lie for the one call that runs the statement. The same
// handle serves the same transaction, so nothing else changes. When the
// handle cannot be had (a connection opened before the function was
// registered), libSQL's statements are used as before.
type preparedStmts struct {
	conn  unsafe.Pointer // the writer's native connection, once known
	stmts map[string]C.fed_stmt_t
	// db is conn's own SQLite handle, nil when it could not be had (then
	// the statements are libSQL's, in stmts); raw holds its statements.
	db     *C.sqlite3
	raw    map[string]*C.sqlite3_stmt
	rawErr error // why db is nil, until reported (execArgs logs it)
	noRaw  bool  // keep to libSQL's statements (tests of that path)
	// scratch for one execution: kinds, integers, blob offsets and
	// lengths into buf (no Go pointers inside, as cgo requires).
	kind []C.uchar
	ival []C.longlong
	off  []C.longlong
	n    []C.int
	buf  []byte
}

// exec executes query with args (int64, bool, []byte or nil) on the
// writer w, preparing query once per connection. It fails with
// errNotPreparable or errNoNativeConn, having executed nothing, when it
// cannot.
func (p *preparedStmts) exec(w *sql.Conn, query string, args []any) error {
	p.kind, p.ival, p.off, p.n, p.buf = p.kind[:0], p.ival[:0], p.off[:0], p.n[:0], p.buf[:0]
	for _, a := range args {
		var k C.uchar
		var iv int64
		var off, n int
		switch a := a.(type) {
		case nil:
			k = C.fed_kind_null
		case int64:
			k, iv = C.fed_kind_int, a
		case bool:
			k = C.fed_kind_int
			if a {
				iv = 1
			}
		case []byte:
			k, off, n = C.fed_kind_blob, len(p.buf), len(a)
			p.buf = append(p.buf, a...)
		default:
			return fmt.Errorf("%w: %T", errNotPreparable, a)
		}
		p.kind = append(p.kind, k)
		p.ival = append(p.ival, C.longlong(iv))
		p.off = append(p.off, C.longlong(off))
		p.n = append(p.n, C.int(n))
	}
	if len(args) == 0 {
		return fmt.Errorf("%w: none", errNotPreparable)
	}
	if len(p.buf) == 0 {
		p.buf = append(p.buf, 0) // a valid address for buf
	}
	return w.Raw(func(dc any) error {
		conn, err := nativeConn(dc)
		if err != nil {
			return err
		}
		if conn != p.conn {
			// A new connection: statements of another are not its own.
			p.release()
			p.conn = conn
			if !p.noRaw {
				p.db, p.rawErr = sqliteHandle(conn)
			}
		}
		if p.db != nil {
			return p.execRaw(query)
		}
		stmt, ok := p.stmts[query]
		if !ok {
			q := C.CString(query)
			defer C.free(unsafe.Pointer(q))
			var cerr *C.char
			if rc := C.libsql_prepare(C.fed_conn_t(conn), q, &stmt, &cerr); rc != 0 {
				return nativeErr("prepare", rc, cerr)
			}
			if p.stmts == nil {
				p.stmts = map[string]C.fed_stmt_t{}
			}
			p.stmts[query] = stmt
		}
		var cerr *C.char
		rc := C.fed_exec(stmt, C.int(len(p.kind)), &p.kind[0], &p.ival[0], &p.off[0], &p.n[0], (*C.uchar)(unsafe.Pointer(&p.buf[0])), &cerr)
		if rc != 0 {
			// Whatever state the failure left the statement in, the
			// next execution starts from a fresh one.
			C.libsql_free_stmt(stmt)
			delete(p.stmts, query)
			return nativeErr("execute", rc, cerr)
		}
		return nil
	})
}

// execRaw executes query with the scratch values on p.db, preparing it
// once.
func (p *preparedStmts) execRaw(query string) error {
	stmt, ok := p.raw[query]
	if !ok {
		q := C.CString(query)
		defer C.free(unsafe.Pointer(q))
		if rc := C.sqlite3_prepare_v2(p.db, q, -1, &stmt, nil); rc != 0 {
			return sqliteErr(p.db, "prepare", rc)
		}
		if p.raw == nil {
			p.raw = map[string]*C.sqlite3_stmt{}
		}
		p.raw[query] = stmt
	}
	if rc := C.fed_raw_exec(stmt, C.int(len(p.kind)), &p.kind[0], &p.ival[0], &p.off[0], &p.n[0], (*C.uchar)(unsafe.Pointer(&p.buf[0]))); rc != 0 {
		err := sqliteErr(p.db, "execute", rc)
		C.sqlite3_finalize(stmt) // the next execution starts from a fresh one
		delete(p.raw, query)
		return err
	}
	return nil
}

// release frees every statement (before their connection closes).
func (p *preparedStmts) release() {
	for q, s := range p.stmts {
		C.libsql_free_stmt(s)
		delete(p.stmts, q)
	}
	for q, s := range p.raw {
		C.sqlite3_finalize(s)
		delete(p.raw, q)
	}
	p.conn, p.db = nil, nil
}

// registerConnHandle makes every SQLite connection opened from now on in
// this process answer fed_conn_handle() (see fed_autoext): how the store
// finds its writer's own SQLite handle. Registering again is a no-op.
func registerConnHandle() error {
	if rc := C.fed_register_autoext(); rc != 0 {
		return fmt.Errorf("register fed_conn_handle: SQLite error %d", int(rc))
	}
	return nil
}

// sqliteHandle returns the SQLite handle under a libSQL connection, which
// answers fed_conn_handle() when it was opened after registerConnHandle.
func sqliteHandle(conn unsafe.Pointer) (*C.sqlite3, error) {
	var h *C.sqlite3
	var cerr *C.char
	if rc := C.fed_sqlite_handle(C.fed_conn_t(conn), &h, &cerr); rc != 0 {
		return nil, nativeErr("find the SQLite handle", rc, cerr)
	}
	if h == nil {
		return nil, errors.New("find the SQLite handle: none")
	}
	return h, nil
}

// sqliteErr describes the failure of op on db with SQLite's result code
// rc (its extended code and message are db's latest; db may be nil).
func sqliteErr(db *C.sqlite3, op string, rc C.int) error {
	if db == nil {
		return fmt.Errorf("%s: SQLite error %d", op, int(rc))
	}
	return fmt.Errorf("%s: SQLite error %d (extended %d): %s", op, int(rc), int(C.sqlite3_extended_errcode(db)), C.GoString(C.sqlite3_errmsg(db)))
}

func nativeErr(op string, rc C.int, msg *C.char) error {
	if msg == nil {
		return fmt.Errorf("%s: libSQL error %d", op, int(rc))
	}
	s := C.GoString(msg)
	C.libsql_free_string(msg)
	return fmt.Errorf("%s: libSQL error %d: %s", op, int(rc), s)
}
