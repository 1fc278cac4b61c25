package libsqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store {
		st, err := libsqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "store.db"), libsqlstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
