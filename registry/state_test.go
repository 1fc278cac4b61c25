package registry

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
)

func TestVerifyRefusesUnsignedForgedAndUnauthorized(t *testing.T) {
	m := newMesh(t)
	trusted, pending, stranger := ident(t, 1), ident(t, 2), ident(t, 3)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(trusted, "phone", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(pending, "tablet", TrustPending)))

	good, err := m.s.NewRename(trusted, ts(20), trusted.DeviceID(), "work phone")
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(good, m.s); err != nil {
		t.Fatalf("a trusted device renaming itself: %v", err)
	}

	unsigned := good
	unsigned.Sig = nil
	tampered := good
	tampered.Name = "evil"
	otherKey := good
	otherKey.AuthorKey = stranger.PublicKey() // claims to be the stranger, signed by trusted
	badSig := cloneOp(good)
	badSig.Sig[0] ^= 1

	byStranger := Op{Kind: OpRename, At: ts(21), Target: m.owner.DeviceID(), Name: "x"}
	byStranger.sign(stranger)
	byPending := Op{Kind: OpRevoke, At: ts(21), Target: trusted.DeviceID()}
	byPending.sign(pending)
	grantOwner := Op{Kind: OpAdd, At: ts(21), Target: stranger.DeviceID(), TargetKey: stranger.PublicKey(), Trust: TrustOwner}
	grantOwner.sign(trusted)
	revokeByPending := Op{Kind: OpRevoke, At: ts(22), Target: m.owner.DeviceID()}
	revokeByPending.sign(pending)

	for _, c := range []struct {
		name string
		op   Op
		want error
	}{
		{"unsigned", unsigned, ErrUnsigned},
		{"field changed after signing", tampered, ErrForged},
		{"signature by another key", otherKey, ErrForged},
		{"corrupted signature", badSig, ErrForged},
		{"unknown author", byStranger, ErrNotAllowed},
		{"pending author", byPending, ErrNotAllowed},
		{"trusted grants owner", grantOwner, ErrNotAllowed},
	} {
		err := Verify(c.op, m.s)
		if !errors.Is(err, c.want) || !errors.Is(err, core.ErrUnauthorized) {
			t.Errorf("%s: Verify = %v, want %v wrapping core.ErrUnauthorized", c.name, err, c.want)
		}
	}
	// Apply refuses what is not correctly signed and keeps nothing of it.
	n := m.s.Len()
	for _, op := range []Op{unsigned, tampered, otherKey, badSig} {
		if _, err := m.s.Apply(op); !errors.Is(err, core.ErrUnauthorized) {
			t.Errorf("Apply accepted a forged op: %v", err)
		}
	}
	// Signed but unauthorized ops are kept (they may become valid once
	// their author's addition arrives) but change nothing.
	before := m.s.Devices()
	for _, op := range []Op{byStranger, byPending, grantOwner, revokeByPending} {
		if _, err := m.s.Apply(op); err != nil {
			t.Fatal(err)
		}
		if m.s.Effective(op.Hash()) {
			t.Errorf("%s by %s took effect", op.Kind, op.Author().Short())
		}
	}
	if m.s.Len() != n+4 || !reflect.DeepEqual(before, m.s.Devices()) {
		t.Fatalf("unauthorized ops changed the registry:\n%v\n%v", before, m.s.Devices())
	}
}

func TestRevokedDeviceCanDoNothing(t *testing.T) {
	m := newMesh(t)
	x, evil := ident(t, 1), ident(t, 2)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(x, "phone", TrustTrusted)))
	// x renames itself; the owner sees it before revoking.
	seen := must(t, m.s)(m.s.NewRename(x, ts(20), x.DeviceID(), "old phone"))
	thief := clone(t, m.s) // the stolen phone's replica
	must(t, m.s)(m.s.NewRevoke(m.owner, ts(30), x.DeviceID()))

	// The thief, holding x's key, signs operations after the revocation
	// and backdates others to before it.
	var forged []Op
	for _, at := range []core.Timestamp{ts(25), ts(40)} {
		add, err := thief.NewAdd(x, at, deviceOf(evil, "evil", TrustTrusted))
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, add)
		thief.Apply(add)
	}
	if err := Verify(forged[1], m.s); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Verify of an op by a revoked device = %v, want ErrRevoked", err)
	}
	for _, op := range forged {
		if _, err := m.s.Apply(op); err != nil {
			t.Fatal(err)
		}
		if m.s.Effective(op.Hash()) {
			t.Fatalf("revoked device's op at %s took effect", op.At)
		}
	}
	if _, ok := m.s.Device(evil.DeviceID()); ok {
		t.Fatal("a device added by a revoked device is in the registry")
	}
	d, _ := m.s.Device(x.DeviceID())
	if d.Trust != TrustRevoked || d.RevokedAt != ts(30) {
		t.Fatalf("x = %+v, want revoked at %s", d, ts(30))
	}
	if !m.s.Effective(seen.Hash()) || d.Name != "old phone" {
		t.Fatalf("the acknowledged rename before revocation was lost: %q", d.Name)
	}
	// Nothing brings it back, not even the owner.
	if _, err := m.s.NewAdd(m.owner, ts(50), deviceOf(x, "phone again", TrustTrusted)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("re-adding a revoked device: %v", err)
	}
}

func TestConcurrentAddAndRevokeEndRevoked(t *testing.T) {
	m := newMesh(t)
	admin, x := ident(t, 1), ident(t, 2)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(admin, "tablet", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(x, "phone", TrustPending)))
	r1, r2 := clone(t, m.s), clone(t, m.s)
	// The owner approves x while, concurrently, the tablet revokes it; in
	// both timestamp orders.
	for _, times := range [][2]int64{{20, 21}, {21, 20}} {
		a, b := clone(t, r1), clone(t, r2)
		approve := must(t, a)(a.NewAdd(m.owner, ts(times[0]), deviceOf(x, "phone", TrustTrusted)))
		revoke := must(t, b)(b.NewRevoke(admin, ts(times[1]), x.DeviceID()))
		must(t, a)(revoke, nil)
		must(t, b)(approve, nil)
		for _, s := range []*State{a, b} {
			if d, _ := s.Device(x.DeviceID()); d.Trust != TrustRevoked {
				t.Fatalf("times %v: x is %s, want revoked", times, d.Trust)
			}
		}
		if !reflect.DeepEqual(a.Devices(), b.Devices()) {
			t.Fatalf("replicas differ:\n%+v\n%+v", a.Devices(), b.Devices())
		}
	}
}

func TestRenameAndPolicyAreLastWriterWins(t *testing.T) {
	m := newMesh(t)
	a, b := ident(t, 1), ident(t, 2)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(a, "a", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(b, "b", TrustTrusted)))
	ra, rb := clone(t, m.s), clone(t, m.s)
	late := must(t, ra)(ra.NewRename(a, ts(30), b.DeviceID(), "later"))
	early := must(t, rb)(rb.NewRename(b, ts(20), b.DeviceID(), "earlier"))
	polA := must(t, ra)(ra.NewSetPolicy(a, ts(40), b.DeviceID(), []byte(`{"conversations":"summary"}`)))
	// Same timestamp: the larger author id wins.
	polB := must(t, rb)(rb.NewSetPolicy(b, ts(40), b.DeviceID(), []byte(`{"conversations":"full"}`)))
	ApplyAllOrFail := func(s *State, ops ...Op) {
		if _, err := s.ApplyAll(ops); err != nil {
			t.Fatal(err)
		}
	}
	ApplyAllOrFail(ra, early, polB)
	ApplyAllOrFail(rb, late, polA)
	wantPolicy := polA.Policy
	if a.DeviceID().Compare(b.DeviceID()) < 0 {
		wantPolicy = polB.Policy
	}
	for _, s := range []*State{ra, rb} {
		d, _ := s.Device(b.DeviceID())
		if d.Name != "later" || !bytes.Equal(d.Policy, wantPolicy) || d.UpdatedAt != ts(40) {
			t.Fatalf("b = %q %s at %s, want \"later\" %s", d.Name, d.Policy, d.UpdatedAt, wantPolicy)
		}
	}
}

func TestMeshSecretRotationExcludesRevokedDevice(t *testing.T) {
	m := newMesh(t)
	a, b := ident(t, 1), ident(t, 2)
	rng := rand.NewChaCha8([32]byte{7})
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(a, "a", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(b, "b", TrustTrusted)))
	if !m.s.NeedsRotation() {
		t.Fatal("a mesh without secret does not ask for one")
	}
	must(t, m.s)(m.s.NewRotation(m.owner, ts(12), rng))
	gen1, err := m.s.OpenSecret(b)
	if err != nil || gen1.Generation != 1 {
		t.Fatalf("b cannot open generation 1: %v", err)
	}
	if m.s.NeedsRotation() {
		t.Fatal("fresh generation reported stale")
	}

	must(t, m.s)(m.s.NewRevoke(a, ts(20), b.DeviceID()))
	if !m.s.NeedsRotation() {
		t.Fatal("revocation did not ask for a new generation")
	}
	rot := must(t, m.s)(m.s.NewRotation(a, ts(21), rng))
	if m.s.Generation() != 2 {
		t.Fatalf("generation %d, want 2", m.s.Generation())
	}
	ko, errO := m.s.OpenSecret(m.owner)
	ka, errA := m.s.OpenSecret(a)
	if errO != nil || errA != nil || ko.Key != ka.Key || ko.Generation != 2 {
		t.Fatalf("remaining devices cannot share generation 2: %v %v", errO, errA)
	}
	if ka.Key == gen1.Key {
		t.Fatal("rotation kept the old key")
	}
	// The revoked device receives the rotation (say through relay mail),
	// but no copy is sealed to it and none of the others opens with its
	// key.
	if _, err := rot.OpenSecret(b); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("revoked device opening generation 2: %v", err)
	}
	var pub, priv [32]byte
	copy(pub[:], b.NoisePublic())
	copy(priv[:], b.NoisePrivate())
	for _, sl := range rot.Sealed {
		if sl.Device == b.DeviceID() {
			t.Fatal("generation 2 sealed to the revoked device")
		}
		if key, ok := openAnonymous(sl.Box[:], &pub, &priv); ok {
			t.Fatalf("revoked device opened %s's copy: %x", sl.Device.Short(), key)
		}
	}
	// A rotation that seals to a revoked device is refused.
	leak := Op{Kind: OpRotateSecret, At: ts(30), Generation: 3, Sealed: []Sealed{{Device: b.DeviceID()}}}
	leak.sign(a)
	if err := Verify(leak, m.s); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("rotation sealed to a revoked device: %v", err)
	}
}

func TestOperationsAuditWithoutPersonalText(t *testing.T) {
	l := audit.New(audit.NewMemory(), audit.Options{})
	for _, op := range seedOps(t) {
		e, err := l.Append(context.Background(), op.AuditEntry())
		if err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
		if e.Device != op.Author() || !e.At.Equal(op.At.Time()) {
			t.Fatalf("%s recorded as %+v", op.Kind, e)
		}
		for _, f := range e.Detail {
			if op.Name != "" && strings.EqualFold(f.Text, op.Name) {
				t.Fatalf("%s: audit entry carries the device name", op.Kind)
			}
		}
	}
	if err := l.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOwnerWinsRevocationRaceAgainstStolenDevice(t *testing.T) {
	m := newMesh(t)
	x, a := ident(t, 1), ident(t, 2)
	must(t, m.s)(m.s.NewAdd(m.owner, ts(10), deviceOf(x, "phone", TrustTrusted)))
	must(t, m.s)(m.s.NewAdd(m.owner, ts(11), deviceOf(a, "tablet", TrustTrusted)))
	thief := clone(t, m.s)
	// The thief, with x's key, races to revoke the owner and the tablet,
	// with timestamps earlier than the owner's revocation of x.
	lockOut := must(t, thief)(thief.NewRevoke(x, ts(20), m.owner.DeviceID()))
	lockOutA := must(t, thief)(thief.NewRevoke(x, ts(21), a.DeviceID()))
	revokeX := must(t, m.s)(m.s.NewRevoke(m.owner, ts(30), x.DeviceID()))
	for _, order := range [][]Op{{lockOut, lockOutA, revokeX}, {revokeX, lockOutA, lockOut}, {lockOutA, revokeX, lockOut}} {
		s := newMesh(t).s
		if _, err := s.ApplyAll(m.s.Ops()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ApplyAll(order); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[core.DeviceID]TrustLevel{m.owner.DeviceID(): TrustOwner, a.DeviceID(): TrustTrusted, x.DeviceID(): TrustRevoked} {
			if d, _ := s.Device(id); d.Trust != want {
				t.Fatalf("%s is %s, want %s", id.Short(), d.Trust, want)
			}
		}
		if s.Effective(lockOut.Hash()) || s.Effective(lockOutA.Hash()) {
			t.Fatal("the thief's revocations took effect")
		}
	}
}
