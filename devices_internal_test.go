package federation

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/store/memstore"
)

// TestNodeRefusesForgedRegistryOperation: the node's ingress check
// (checkOps, the commit pipeline's Config.Check) runs the registry's, so
// an operation whose signature does not verify is refused with
// ErrForgedOperation and the refusal is in the node's audit log
// (internal/devices tests the check itself).
func TestNodeRefusesForgedRegistryOperation(t *testing.T) {
	ctx := context.Background()
	n, err := New(Config{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.c.Reg.EnsureMesh(ctx); err != nil {
		t.Fatal(err)
	}
	mallory, _ := identity.Generate(nil)
	ts, _ := n.Now()
	op, err := registry.Genesis(mallory, ts, "mallory", registry.TypeUnknown, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := op.Marshal()
	raw[len(raw)-1] ^= 1 // break the signature
	h := op.Hash()
	rec := core.Record{Collection: registryCollection, Key: hex.EncodeToString(h[:]), Value: raw}
	err = n.c.Rep.Exclusive(ctx, "", func() error { return n.c.CheckOps(ctx, mallory.DeviceID(), []core.Record{rec}) })
	if !errors.Is(err, ErrForgedOperation) || !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("forged op: %v", err)
	}
	entries, err := n.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRefusal}})
	if err != nil || len(entries) != 1 || entries[0].Device != mallory.DeviceID() {
		t.Fatalf("refusal not audited: %v %v", entries, err)
	}
}
