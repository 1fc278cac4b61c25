// The functions of SQLite's own C API this package calls directly, below
// go-libsql: the engine inside libSQL, which the library go-libsql links
// exports them. rawread.go reads the changelog on connections of its own;
// prepared.go runs the writer's hot INSERTs on the writer's own handle.
#ifndef FED_SQLITE3API_H
#define FED_SQLITE3API_H

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef struct sqlite3_context sqlite3_context;
typedef struct sqlite3_value sqlite3_value;

int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs);
int sqlite3_close_v2(sqlite3 *db);
int sqlite3_exec(sqlite3 *db, const char *sql, void *callback, void *arg, char **errmsg);
void sqlite3_free(void *p);
int sqlite3_busy_timeout(sqlite3 *db, int ms);
const char *sqlite3_errmsg(sqlite3 *db);
int sqlite3_extended_errcode(sqlite3 *db);
int sqlite3_auto_extension(void (*entry)(void));
int sqlite3_create_function_v2(sqlite3 *db, const char *name, int nargs, int flags, void *app,
		void (*fn)(sqlite3_context *, int, sqlite3_value **), void (*step)(sqlite3_context *, int, sqlite3_value **),
		void (*final)(sqlite3_context *), void (*destroy)(void *));
sqlite3 *sqlite3_context_db_handle(sqlite3_context *ctx);
void sqlite3_result_int64(sqlite3_context *ctx, long long v);
int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int n, sqlite3_stmt **stmt, const char **tail);
int sqlite3_bind_int64(sqlite3_stmt *stmt, int idx, long long value);
int sqlite3_bind_null(sqlite3_stmt *stmt, int idx);
int sqlite3_bind_blob(sqlite3_stmt *stmt, int idx, const void *value, int n, void (*destroy)(void *));
int sqlite3_step(sqlite3_stmt *stmt);
int sqlite3_reset(sqlite3_stmt *stmt);
int sqlite3_clear_bindings(sqlite3_stmt *stmt);
int sqlite3_finalize(sqlite3_stmt *stmt);
int sqlite3_column_type(sqlite3_stmt *stmt, int col);
long long sqlite3_column_int64(sqlite3_stmt *stmt, int col);
const void *sqlite3_column_blob(sqlite3_stmt *stmt, int col);
int sqlite3_column_bytes(sqlite3_stmt *stmt, int col);

// SQLite's constants, as sqlite3.h defines them.
enum {
	fed_sqlite_open_readwrite = 0x2,
	fed_sqlite_open_nomutex = 0x8000,
	fed_sqlite_utf8 = 1,
	fed_sqlite_directonly = 0x80000,
	fed_sqlite_row = 100,
	fed_sqlite_done = 101,
	fed_sqlite_integer = 1,
	fed_sqlite_blob = 4,
	fed_sqlite_null = 5,
};

#endif
