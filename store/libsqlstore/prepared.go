package libsqlstore

/*
#include <stdlib.h>

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
enum { fed_null = 0, fed_int = 1, fed_blob = 2 };

// fed_exec binds n values (kind, integer, or the blob at off[i] of len[i]
// bytes in buf) to stmt, executes it and clears its parameters, in one
// call from Go. The library copies every value it binds. On failure it
// returns nonzero with *err set (free it with libsql_free_string).
static int fed_exec(fed_stmt_t stmt, int n, const unsigned char *kind, const long long *ival,
		const long long *off, const int *len, const unsigned char *buf, const char **err) {
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		switch (kind[i]) {
		case fed_null:
			rc = libsql_bind_null(stmt, i + 1, err);
			break;
		case fed_int:
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
type preparedStmts struct {
	conn  unsafe.Pointer // the writer's native connection, once known
	stmts map[string]C.fed_stmt_t
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
			k = C.fed_null
		case int64:
			k, iv = C.fed_int, a
		case bool:
			k = C.fed_int
			if a {
				iv = 1
			}
		case []byte:
			k, off, n = C.fed_blob, len(p.buf), len(a)
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

// release frees every statement (before their connection closes).
func (p *preparedStmts) release() {
	for q, s := range p.stmts {
		C.libsql_free_stmt(s)
		delete(p.stmts, q)
	}
	p.conn = nil
}

func nativeErr(op string, rc C.int, msg *C.char) error {
	if msg == nil {
		return fmt.Errorf("%s: libSQL error %d", op, int(rc))
	}
	s := C.GoString(msg)
	C.libsql_free_string(msg)
	return fmt.Errorf("%s: libSQL error %d: %s", op, int(rc), s)
}
