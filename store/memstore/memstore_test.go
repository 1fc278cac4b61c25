package memstore_test

import (
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) core.Store { return memstore.New() })
}
