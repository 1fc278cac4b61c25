package devices

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/registry"
)

// fakeReplica is a commit pipeline in memory: one lock, records kept by
// key, and the Registry as its only observer (its after work run once the
// lock is released, as internal/replica does).
type fakeReplica struct {
	mu      sync.Mutex
	reg     *Registry
	records map[string]core.Record
	log     []core.Record // committed records, in commit order
}

func newFakeReplica() *fakeReplica { return &fakeReplica{records: map[string]core.Record{}} }

func (f *fakeReplica) Update(ctx context.Context, _ string, fn func(context.Context) ([]replica.Op, error)) error {
	f.mu.Lock()
	ops, err := fn(ctx)
	if err != nil || len(ops) == 0 {
		f.mu.Unlock()
		return err
	}
	recs := make([]core.Record, len(ops))
	for i, op := range ops {
		recs[i] = core.Record{Collection: op.Collection, Key: op.Key, Value: op.Value, Deleted: op.Deleted}
	}
	after := f.commitLocked(recs)
	f.mu.Unlock()
	if after != nil {
		after()
	}
	return nil
}

// commit commits records received from elsewhere, as ApplyRemote would.
func (f *fakeReplica) commit(recs ...core.Record) {
	f.mu.Lock()
	after := f.commitLocked(recs)
	f.mu.Unlock()
	if after != nil {
		after()
	}
}

func (f *fakeReplica) commitLocked(recs []core.Record) func() {
	for _, r := range recs {
		f.records[r.Key] = r
		f.log = append(f.log, r)
	}
	return f.reg.Committed(replica.Commit{Source: replica.SourceLocal, Records: recs})
}

func (f *fakeReplica) Exclusive(_ context.Context, _ string, fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn()
}

func (f *fakeReplica) RefuseReentry(context.Context, string) error { return nil }

func (f *fakeReplica) OriginDevice(origin core.DeviceID) core.DeviceID { return origin }

func (f *fakeReplica) Scan(_ context.Context, collection string, _ core.KeyRange, fn func(core.Record) error) error {
	for _, r := range f.records {
		if r.Collection == collection {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// device is a Registry on fakes, with what it audited and cut off.
type device struct {
	ident   *identity.Identity
	rep     *fakeReplica
	reg     *Registry
	trust   *Trust
	mu      sync.Mutex
	audited []audit.Entry
	cut     []core.DeviceID
}

func newDevice(t *testing.T) *device {
	t.Helper()
	ident, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTrust(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{ident: ident, rep: newFakeReplica(), trust: tr}
	d.reg = New(Config{
		Replica: d.rep, Identity: ident, HLC: core.NewHLC(nil, 0), Trust: tr, Name: "dev",
		Audit: func(_ context.Context, e audit.Entry) {
			d.mu.Lock()
			d.audited = append(d.audited, e)
			d.mu.Unlock()
		},
		CutOff: func(id core.DeviceID) int {
			d.mu.Lock()
			d.cut = append(d.cut, id)
			d.mu.Unlock()
			return 0
		},
	})
	d.rep.reg = d.reg
	return d
}

func (d *device) devices(t *testing.T) []registry.Device {
	t.Helper()
	ds, err := d.trust.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestForgedRegistryOperationRefused: an operation whose signature does not
// verify is refused with the transaction carrying it, and audited.
func TestForgedRegistryOperationRefused(t *testing.T) {
	ctx := context.Background()
	n := newDevice(t)
	if err := n.reg.EnsureMesh(ctx); err != nil {
		t.Fatal(err)
	}
	mallory, _ := identity.Generate(nil)
	ts, _ := n.reg.cfg.HLC.Now()
	var op registry.Op
	err := n.rep.Exclusive(ctx, "", func() (err error) {
		op, err = n.reg.reg.NewAdd(n.ident, ts, registry.Device{PublicKey: mallory.PublicKey(), Name: "mallory", Trust: registry.TrustOwner})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := op.Marshal()
	raw[len(raw)-1] ^= 1 // break the signature
	h := op.Hash()
	rec := core.Record{Collection: Collection, Key: hex.EncodeToString(h[:]), Value: raw}
	err = n.reg.Check(ctx, mallory.DeviceID(), []core.Record{rec})
	if !errors.Is(err, ErrForgedOperation) || !errors.Is(err, core.ErrProtocol) {
		t.Fatalf("forged op: %v", err)
	}
	var refusals []audit.Entry
	for _, e := range n.audited {
		if e.Kind == audit.KindRefusal {
			refusals = append(refusals, e)
		}
	}
	if len(refusals) != 1 || refusals[0].Device != mallory.DeviceID() {
		t.Fatalf("refusal not audited: %v", refusals)
	}
	// The genuine operation passes the same check.
	good := core.Record{Collection: Collection, Key: rec.Key, Value: op.Marshal()}
	if err := n.reg.Check(ctx, n.ident.DeviceID(), []core.Record{good}); err != nil {
		t.Fatalf("genuine op refused: %v", err)
	}
	// So does a record whose key is not its operation's hash: no.
	moved := core.Record{Collection: Collection, Key: hex.EncodeToString(make([]byte, 32)), Value: op.Marshal()}
	if err := n.reg.Check(ctx, n.ident.DeviceID(), []core.Record{moved}); !errors.Is(err, ErrForgedOperation) {
		t.Fatalf("op under another key: %v, want ErrForgedOperation", err)
	}
}

// history makes a mesh on a founder (genesis, two adds, a rename, a
// policy, a revocation, secret rotations) and returns the founder, the
// revoked device, the records of every operation it committed but the
// last, and that last one: a rotation of the mesh secret.
func history(t *testing.T) (a *device, revoked core.DeviceID, recs []core.Record, later core.Record) {
	t.Helper()
	ctx := context.Background()
	a = newDevice(t)
	if err := a.reg.EnsureMesh(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := identity.Generate(nil)
	c, _ := identity.Generate(nil)
	for _, k := range []core.PublicKey{b.PublicKey(), c.PublicKey()} {
		if err := a.reg.Add(ctx, k, "joiner", registry.TypeUnknown); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.reg.Rename(ctx, c.DeviceID(), "kitchen tablet"); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.SetPolicy(ctx, c.DeviceID(), []byte(`{"media":"thumbnails"}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Revoke(ctx, b.DeviceID()); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.RotateSecret(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(a.rep.log)
	return a, b.DeviceID(), append([]core.Record(nil), a.rep.log[:n-1]...), a.rep.log[n-1]
}

// TestFoldInAnyOrder: operations folded in any order, genesis first or
// last, one commit each or all at once, give the founder's registry; the
// revoked device is handed to the cut-off exactly once, and never again
// when later operations arrive, nor after a reload.
func TestFoldInAnyOrder(t *testing.T) {
	ctx := context.Background()
	a, revoked, recs, later := history(t)
	want := a.devices(t)
	if len(recs) < 7 {
		t.Fatalf("history has %d operations", len(recs))
	}
	if !reflect.DeepEqual(a.cut, []core.DeviceID{revoked, revoked}) {
		// Revoke cuts at once, and the fold of its operation once more.
		t.Fatalf("founder cut off %v, want the revoked device by Revoke and by the fold", a.cut)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 30 {
		order := append([]core.Record(nil), recs...)
		switch i {
		case 0: // as committed
		case 1: // reversed: the genesis comes last
			for l, r := 0, len(order)-1; l < r; l, r = l+1, r-1 {
				order[l], order[r] = order[r], order[l]
			}
		default:
			rng.Shuffle(len(order), func(x, y int) { order[x], order[y] = order[y], order[x] })
		}
		d := newDevice(t)
		if i%3 == 2 {
			d.rep.commit(order...) // all in one commit
		} else {
			for _, r := range order {
				d.rep.commit(r)
			}
		}
		if got := d.devices(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %d: devices\n%v\nwant\n%v", i, got, want)
		}
		if !reflect.DeepEqual(d.cut, []core.DeviceID{revoked}) {
			t.Fatalf("order %d: cut off %v, want %v once", i, d.cut, revoked)
		}
		// Delivered again, and with later operations: nothing more is cut.
		d.rep.commit(order...)
		d.rep.commit(later)
		if got := d.devices(t); !reflect.DeepEqual(got, want) {
			t.Fatalf("order %d: devices after later operations\n%v\nwant\n%v", i, got, want)
		}
		if len(d.cut) != 1 {
			t.Fatalf("order %d: cut off %v after later operations, want once", i, d.cut)
		}
	}
	// A reload finds the revoked device without cutting it off again.
	d := newDevice(t)
	d.rep.records = a.rep.records
	if err := d.reg.Load(ctx, d.rep); err != nil {
		t.Fatal(err)
	}
	d.rep.commit(later)
	if len(d.cut) != 0 {
		t.Fatalf("reload cut off %v", d.cut)
	}
	if got := d.devices(t); len(got) != len(want) {
		t.Fatalf("reload: %d devices, want %d", len(got), len(want))
	}
}

// TestOpsBeforeGenesisWait: operations that arrive before the mesh's
// genesis are held, not lost, and take effect when it arrives.
func TestOpsBeforeGenesisWait(t *testing.T) {
	_, _, recs, _ := history(t)
	d := newDevice(t)
	for _, r := range recs[1:] {
		d.rep.commit(r)
	}
	if got := d.devices(t); len(got) != 0 {
		t.Fatalf("devices before the genesis: %v", got)
	}
	if _, err := d.reg.MeshSecret(); !errors.Is(err, registry.ErrNoSecret) {
		t.Fatalf("mesh secret before the genesis: %v", err)
	}
	d.rep.commit(recs[0])
	if got := d.devices(t); len(got) != 3 {
		t.Fatalf("devices after the genesis: %v", got)
	}
}

// TestRequiredMeshOp: renaming with no mesh fails with
// core.ErrInvalidArgument and writes nothing.
func TestRequiredMeshOp(t *testing.T) {
	d := newDevice(t)
	err := d.reg.Rename(context.Background(), d.ident.DeviceID(), "x")
	if !errors.Is(err, core.ErrInvalidArgument) {
		t.Fatalf("rename without a mesh: %v", err)
	}
	if len(d.rep.log) != 0 {
		t.Fatalf("wrote %d records", len(d.rep.log))
	}
}
