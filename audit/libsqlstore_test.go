package audit

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/store/libsqlstore"
)

// The audit log works on the table the libSQL store's migrations create,
// across a reopen of the store file.
func TestOnLibSQLStoreTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "node.db")
	st, err := libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureSchema(ctx, st.DB()); err != nil { // no-op on the migrated table
		t.Fatal(err)
	}
	l := New(NewSQL(st.DB()), Options{})
	fill(t, l, 5)
	head, err := l.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = libsqlstore.Open(ctx, path, libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l = New(NewSQL(st.DB()), Options{})
	if err := l.VerifyHead(ctx, head); err != nil {
		t.Fatal(err)
	}
	if es, err := l.Query(ctx, Filter{Device: devB}); err != nil || len(es) != 2 {
		t.Fatalf("query after reopen: %d entries, %v", len(es), err)
	}
	if _, err := st.DB().ExecContext(ctx, `UPDATE audit SET detail = X'00' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	wantTamperAt(t, l.Verify(ctx), 2)
}
