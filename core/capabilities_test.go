package core_test

import (
	"context"
	"io"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
)

// hiding wraps a store and hides its capabilities (it embeds the Store
// interface only).
type hiding struct{ core.Store }

// unwrapping wraps a store and says so.
type unwrapping struct{ core.Store }

func (u unwrapping) Unwrap() core.Store { return u.Store }

// loop unwraps to itself, wrongly.
type loop struct{ core.Store }

func (l *loop) Unwrap() core.Store { return l }

// TestStoreAs: a capability is found on the store itself first, then along
// the Unwrap chain, never past a wrapper that does not unwrap, and a
// wrapper that unwraps to itself ends the search instead of hanging it.
func TestStoreAs(t *testing.T) {
	mem := memstore.New()
	defer mem.Close()
	if b, ok := core.StoreAs[core.BackupStore](mem); !ok || b != core.BackupStore(mem) {
		t.Fatalf("StoreAs on the store itself = %v, %v", b, ok)
	}
	deep := unwrapping{unwrapping{mem}}
	if b, ok := core.StoreAs[core.BackupStore](deep); !ok || b != core.BackupStore(mem) {
		t.Fatalf("StoreAs through two Unwraps = %v, %v", b, ok)
	}
	if m, ok := core.StoreAs[core.ManyGetter](deep); !ok || m != core.ManyGetter(mem) {
		t.Fatalf("StoreAs[ManyGetter] through Unwrap = %v, %v", m, ok)
	}
	if _, ok := core.StoreAs[core.BackupStore](unwrapping{hiding{mem}}); ok {
		t.Fatal("StoreAs looked past a wrapper that does not unwrap")
	}
	if _, ok := core.StoreAs[core.SQLStore](deep); ok {
		t.Fatal("the in-memory store is no SQLStore")
	}
	if _, ok := core.StoreAs[core.BackupStore](&loop{hiding{mem}}); ok {
		t.Fatal("StoreAs found a capability in a self-loop")
	}
	if _, ok := core.StoreAs[core.BackupStore](nil); ok {
		t.Fatal("StoreAs(nil) found something")
	}
	// The outermost store answers first, so a wrapper that forwards a
	// capability itself is the one used.
	fwd := forwarding{unwrapping{mem}}
	if b, ok := core.StoreAs[core.BackupStore](fwd); !ok || b != core.BackupStore(fwd) {
		t.Fatalf("StoreAs did not prefer the forwarding wrapper: %v, %v", b, ok)
	}
}

// forwarding implements BackupStore itself (by forwarding) and unwraps.
type forwarding struct{ unwrapping }

func (f forwarding) Backup(ctx context.Context, w io.Writer) error {
	return f.Store.(core.BackupStore).Backup(ctx, w)
}
