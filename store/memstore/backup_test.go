package memstore_test

import (
	"io"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/store/storetest"
)

func TestBackup(t *testing.T) {
	storetest.RunBackup(t, func(t *testing.T) core.BackupStore { return memstore.New() }, func(t *testing.T, r io.Reader) core.Store {
		st, err := memstore.Restore(r)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
