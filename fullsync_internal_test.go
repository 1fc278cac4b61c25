package federation

import (
	"context"
	"testing"

	"github.com/devicemesh/federation/store/libsqlstore"
)

// TestFullSyncReachesTheStore: Config.FullSync sets synchronous=FULL (2)
// on the default store's connections; the default is NORMAL (1).
func TestFullSyncReachesTheStore(t *testing.T) {
	for _, full := range []bool{false, true} {
		n, err := New(Config{Dir: t.TempDir(), FullSync: full})
		if err != nil {
			t.Fatal(err)
		}
		st, ok := n.c.Store.(*libsqlstore.Store)
		if !ok {
			t.Fatalf("default store is %T", n.c.Store)
		}
		var mode int
		if err := st.DB().QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		want := 1
		if full {
			want = 2
		}
		if mode != want {
			t.Errorf("FullSync %v: synchronous = %d, want %d", full, mode, want)
		}
		_ = n.Close()
	}
}
