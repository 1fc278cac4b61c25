package mailbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/relay"
)

// fakeReplica is a changelog with ApplyRemote's rules: whole
// transactions, no gaps, causal dependencies first.
type fakeReplica struct {
	mu  sync.Mutex
	log map[core.DeviceID][]core.Change
}

func newReplica() *fakeReplica { return &fakeReplica{log: map[core.DeviceID][]core.Change{}} }

func (r *fakeReplica) VersionVector(context.Context) (core.VersionVector, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vvLocked(), nil
}

func (r *fakeReplica) vvLocked() core.VersionVector {
	vv := core.VersionVector{}
	for o, cs := range r.log {
		if len(cs) > 0 {
			vv[o] = cs[len(cs)-1].Seq
		}
	}
	return vv
}

func (r *fakeReplica) Changes(_ context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	r.mu.Lock()
	cs := slices.Clone(r.log[origin])
	r.mu.Unlock()
	for _, c := range cs {
		if c.Seq <= after {
			continue
		}
		if limit--; limit < 0 {
			return nil
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}

func (r *fakeReplica) OriginDevice(o core.DeviceID) core.DeviceID { return o }

func (r *fakeReplica) ApplyRemote(_ context.Context, txns [][]core.Change) (syncer.Applied, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.vvLocked()
	var fresh [][]core.Change
	for _, t := range txns {
		if err := replica.Txn(t).Validate(); err != nil {
			return syncer.Applied{}, err
		}
		o := t[0].Origin
		switch {
		case t[len(t)-1].Seq <= next[o]:
			continue
		case t[0].TxnFirst != next[o]+1:
			return syncer.Applied{}, replica.ErrGap
		}
		if !depsHeld(t, next) {
			return syncer.Applied{}, replica.ErrCausality
		}
		next[o] = t[len(t)-1].Seq
		fresh = append(fresh, t)
	}
	for _, t := range fresh {
		r.log[t[0].Origin] = append(r.log[t[0].Origin], t...)
	}
	return syncer.Applied{Txns: len(fresh)}, nil
}

// write appends a local transaction of origin, depending on deps.
func (r *fakeReplica) write(origin core.DeviceID, coll string, deps core.VersionVector, keys ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := uint64(len(r.log[origin])) + 1
	for i, k := range keys {
		ctx := deps.Clone()
		ctx[origin] = first + uint64(i)
		r.log[origin] = append(r.log[origin], core.Change{
			Record:   core.Record{Collection: coll, Key: k, Value: []byte("v-" + k), Timestamp: core.Timestamp(first), Origin: origin, Seq: first + uint64(i), Context: ctx},
			TxnFirst: first, TxnLen: uint32(len(keys)),
		})
	}
}

func (r *fakeReplica) holds(origin core.DeviceID, key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.log[origin] {
		if c.Key == key {
			return true
		}
	}
	return false
}

// memRelay is an in-memory mail service: it keeps every deposit in order.
type memRelay struct {
	mu    sync.Mutex
	seq   uint64
	boxes map[relay.Mailbox][]relay.Mail
}

func (m *memRelay) Deposit(_ context.Context, mb relay.Mailbox, env []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seq++
	m.boxes[mb] = append(m.boxes[mb], relay.Mail{Seq: m.seq, Envelope: slices.Clone(env)})
	return m.seq, nil
}

func (m *memRelay) Collect(_ context.Context, mb relay.Mailbox, after uint64, limit int) ([]relay.Mail, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []relay.Mail
	for _, ml := range m.boxes[mb] {
		if ml.Seq > after && len(out) < limit {
			out = append(out, ml)
			after = ml.Seq
		}
	}
	return out, after, nil
}

func (m *memRelay) Ack(_ context.Context, mb relay.Mailbox, seqs []uint64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	m.boxes[mb] = slices.DeleteFunc(m.boxes[mb], func(ml relay.Mail) bool {
		if slices.Contains(seqs, ml.Seq) {
			n++
			return true
		}
		return false
	})
	return n, nil
}

func (m *memRelay) Close() error { return nil }

func (m *memRelay) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, b := range m.boxes {
		n += len(b)
	}
	return n
}

type metaMap struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *metaMap) Meta(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[k]; ok {
		return v, nil
	}
	return nil, core.ErrNotFound
}

func (s *metaMap) SetMeta(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = slices.Clone(v)
	return nil
}

// device is one mailer over a fake replica, all devices sharing a relay,
// a mesh secret and a clock.
type device struct {
	id  *identity.Identity
	rep *fakeReplica
	m   *Mailer
	sec *registry.Secret // nil: the mesh's
}

type mesh struct {
	clock  *core.ManualClock
	relay  *memRelay
	secret registry.Secret
	devs   []*device
	syncs  func(string) bool
}

func newMesh(t *testing.T, n int) *mesh {
	t.Helper()
	ms := &mesh{clock: core.NewManualClock(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)), relay: &memRelay{boxes: map[relay.Mailbox][]relay.Mail{}},
		secret: registry.Secret{Generation: 1, Key: [32]byte{7}}, syncs: func(c string) bool { return !strings.HasPrefix(c, "local") }}
	for range n {
		id, err := identity.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ms.devs = append(ms.devs, &device{id: id, rep: newReplica()})
	}
	for _, d := range ms.devs {
		d.m = New(Config{
			Ident: d.id, Replica: d.rep, Meta: &metaMap{m: map[string][]byte{}},
			Dial: func(context.Context) (Conn, error) { return ms.relay, nil },
			Secret: func() (registry.Secret, error) {
				if d.sec != nil {
					return *d.sec, nil
				}
				return ms.secret, nil
			},
			Peers: func(context.Context) ([]core.DeviceID, error) {
				var out []core.DeviceID
				for _, o := range ms.devs {
					out = append(out, o.id.DeviceID())
				}
				return out, nil
			},
			KeyOf: func(_ context.Context, id core.DeviceID) (core.PublicKey, error) {
				for _, o := range ms.devs {
					if o.id.DeviceID() == id {
						return o.id.PublicKey(), nil
					}
				}
				return core.PublicKey{}, core.ErrNotFound
			},
			Online: func(core.DeviceID) bool { return false },
			Syncs:  func(c string) bool { return ms.syncs(c) },
			Clock:  ms.clock, OfflineAfter: time.Minute,
		})
	}
	return ms
}

func (ms *mesh) id(i int) core.DeviceID { return ms.devs[i].id.DeviceID() }

func round(t *testing.T, d *device) {
	t.Helper()
	if err := d.m.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestMailOnlyAfterOffline: a peer is mailed only once its session ended
// OfflineAfter ago, and only what it lacked at the end.
func TestMailOnlyAfterOffline(t *testing.T) {
	ms := newMesh(t, 2)
	a, b := ms.devs[0], ms.devs[1]
	a.rep.write(ms.id(0), "notes", nil, "old")
	round(t, a)
	if ms.relay.count() != 0 {
		t.Fatal("a mailed a peer it never had a session with")
	}
	// The session ends with b holding "old" (b received it then).
	a.m.SessionEnded(context.Background(), ms.id(1), core.VersionVector{ms.id(0): 1})
	b.rep.log[ms.id(0)] = slices.Clone(a.rep.log[ms.id(0)])
	a.rep.write(ms.id(0), "notes", nil, "new")
	ms.clock.Advance(30 * time.Second)
	round(t, a)
	if ms.relay.count() != 0 {
		t.Fatal("a mailed a peer offline for 30s of the minute it waits")
	}
	ms.clock.Advance(31 * time.Second)
	round(t, a)
	if ms.relay.count() != 1 || a.m.Stats().Sent != 1 {
		t.Fatalf("a mailed %d envelopes", ms.relay.count())
	}
	round(t, a)
	if ms.relay.count() != 1 {
		t.Fatal("a mailed the same changes twice")
	}
	round(t, b)
	if !b.rep.holds(ms.id(0), "new") || ms.relay.count() != 0 || b.m.Stats().Acked != 1 {
		t.Fatalf("b holds new: %v; %d mails left", b.rep.holds(ms.id(0), "new"), ms.relay.count())
	}
}

// TestMailCausalAcrossLetters: c's transaction depends on a's; b mails
// c's first (origins in id order may put it first) in one letter and a's
// in another, from two senders: d applies both in causal order. A letter
// with a gap stays at the relay until what it follows arrives.
func TestMailCausalAcrossLetters(t *testing.T) {
	ms := newMesh(t, 3)
	a, b, c := ms.devs[0], ms.devs[1], ms.devs[2]
	// a writes two transactions; b holds both, c writes one depending on
	// a's second.
	a.rep.write(ms.id(0), "notes", nil, "a1")
	a.rep.write(ms.id(0), "notes", nil, "a2")
	b.rep.log[ms.id(0)] = slices.Clone(a.rep.log[ms.id(0)])
	b.rep.write(ms.id(1), "notes", core.VersionVector{ms.id(0): 2}, "b1")
	// b mails c only its own transaction (c told b it held a's: a lie
	// that leaves c a gap), and a mails c its second transaction only.
	b.m.SessionEnded(context.Background(), ms.id(2), core.VersionVector{ms.id(0): 2})
	a.m.SessionEnded(context.Background(), ms.id(2), core.VersionVector{ms.id(0): 1})
	ms.clock.Advance(2 * time.Minute)
	round(t, b)
	round(t, c)
	if c.rep.holds(ms.id(1), "b1") {
		t.Fatal("c applied b1 before the change it depends on")
	}
	if st := c.m.Stats(); st.Pending != 1 || ms.relay.count() != 1 {
		t.Fatalf("b's letter should wait at the relay: pending %d, %d mails", st.Pending, ms.relay.count())
	}
	round(t, a) // a2 only: a gap too (c holds nothing of a)
	round(t, c)
	if c.rep.holds(ms.id(0), "a2") || ms.relay.count() != 2 {
		t.Fatalf("c applied a2 without a1, or dropped a letter (%d left)", ms.relay.count())
	}
	// a learns c holds nothing of it: the next letter brings a1 and a2.
	a.m.mu.Lock()
	a.m.peers[ms.id(2)].vv = core.VersionVector{}
	a.m.mu.Unlock()
	round(t, a)
	round(t, c)
	for _, k := range []string{"a1", "a2"} {
		if !c.rep.holds(ms.id(0), k) {
			t.Fatalf("c lacks %s", k)
		}
	}
	if !c.rep.holds(ms.id(1), "b1") {
		t.Fatal("c lacks b1 once its dependency arrived")
	}
	if ms.relay.count() != 0 || c.m.Stats().Pending != 0 {
		t.Fatalf("%d mails left after everything applied", ms.relay.count())
	}
}

// TestMailLocalOnlyNeverLeaves: a change of a collection that does not
// sync is never packed, nor anything of its origin after it; other
// origins still go out.
func TestMailLocalOnlyNeverLeaves(t *testing.T) {
	ms := newMesh(t, 3)
	// a's origin comes first in the mail (origins go in id order): the
	// stop on its local-only change must not stop c's.
	a, b, c := ms.devs[0], ms.devs[1], ms.devs[2]
	if a.id.DeviceID().Compare(c.id.DeviceID()) > 0 {
		a, c = c, a
	}
	ida, idc := a.id.DeviceID(), c.id.DeviceID()
	a.m.SessionEnded(context.Background(), b.id.DeviceID(), core.VersionVector{})
	a.rep.write(ida, "notes", nil, "shared")
	a.rep.write(ida, "local-secrets", nil, "pin")
	a.rep.write(ida, "notes", nil, "after")
	c.rep.write(idc, "notes", nil, "from-c")
	a.rep.log[idc] = slices.Clone(c.rep.log[idc]) // a holds c's change
	ms.clock.Advance(2 * time.Minute)
	round(t, a)
	for _, box := range ms.relay.boxes {
		for _, ml := range box {
			l, err := relay.Open(ml.Envelope, b.id, func(core.DeviceID) (core.PublicKey, error) { return a.id.PublicKey(), nil })
			if err != nil {
				t.Fatal(err)
			}
			cs, err := wire.DecodeChanges(l.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range cs {
				if ch.Collection != "notes" || (ch.Key != "shared" && ch.Key != "from-c") {
					t.Fatalf("mailed %s/%s", ch.Collection, ch.Key)
				}
			}
		}
	}
	round(t, b)
	if !b.rep.holds(ida, "shared") || b.rep.holds(ida, "pin") || b.rep.holds(ida, "after") {
		t.Fatal("b should hold shared, never pin nor what follows it")
	}
	if !b.rep.holds(idc, "from-c") {
		t.Fatal("the local-only change of a stopped the mail of c's changes")
	}
}

// TestMailRefusesBadLetters: letters from untrusted senders, for another
// epoch, or with malformed changes are refused and deleted, nothing of
// them applied.
func TestMailRefusesBadLetters(t *testing.T) {
	ms := newMesh(t, 2)
	a, b := ms.devs[0], ms.devs[1]
	stranger, _ := identity.Generate(rand.Reader)
	epoch := relay.EpochAt(ms.clock.Now(), 0)
	mb := relay.MailboxFor(ms.secret.Key, ms.secret.Generation, ms.id(1), epoch)
	good := newReplica()
	good.write(ms.id(0), "notes", nil, "x")
	body := wire.AppendChanges(nil, good.log[ms.id(0)])
	deposit := func(from *identity.Identity, ep uint64, body []byte) {
		env, err := relay.Seal(relay.Letter{Sender: from.DeviceID(), Recipient: ms.id(1), Epoch: ep, Kind: relay.LetterChanges, Body: body}, from, b.id.PublicKey(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ms.relay.Deposit(context.Background(), mb, env); err != nil {
			t.Fatal(err)
		}
	}
	deposit(stranger, epoch, body)        // untrusted sender
	deposit(a.id, epoch+5, body)          // another epoch's letter, replayed here
	deposit(a.id, epoch, []byte{1, 2, 3}) // malformed changes
	deposit(b.id, epoch, body)            // from itself
	garbage := make([]byte, 1024)
	_, _ = rand.Read(garbage)
	_, _ = ms.relay.Deposit(context.Background(), mb, garbage) // does not open
	round(t, b)
	if b.rep.holds(ms.id(0), "x") {
		t.Fatal("a refused letter was applied")
	}
	if st := b.m.Stats(); st.Refused != 5 || st.Acked != 5 || ms.relay.count() != 0 {
		t.Fatalf("refused %d, acked %d, %d left", st.Refused, st.Acked, ms.relay.count())
	}
	// The genuine letter goes through.
	deposit(a.id, epoch, body)
	round(t, b)
	if !b.rep.holds(ms.id(0), "x") {
		t.Fatal("genuine letter not applied")
	}
}

// TestMailPeerStatePersists: what a peer held survives a restart of the
// mailer (its MetaStore).
func TestMailPeerStatePersists(t *testing.T) {
	ms := newMesh(t, 2)
	a := ms.devs[0]
	a.m.SessionEnded(context.Background(), ms.id(1), core.VersionVector{ms.id(0): 9})
	again := New(a.m.cfg)
	again.mu.Lock()
	st := again.loadLocked(context.Background(), ms.id(1))
	again.mu.Unlock()
	if st.vv[ms.id(0)] != 9 || !st.since.Equal(ms.clock.Now()) {
		t.Fatalf("reloaded %v since %v", st.vv, st.since)
	}
	if _, err := a.m.cfg.Meta.Meta(context.Background(), "nothing"); !errors.Is(err, core.ErrNotFound) {
		t.Fatal(fmt.Sprint("meta fake: ", err))
	}
}

// TestMailAcrossRotation: the mesh secret rotates (a revocation) while b
// is offline: a mails b under the generation b knew, and b, once it
// learns the new one, still collects under the one before.
func TestMailAcrossRotation(t *testing.T) {
	ms := newMesh(t, 2)
	a, b := ms.devs[0], ms.devs[1]
	gen1, gen2 := ms.secret, registry.Secret{Generation: 2, Key: [32]byte{9}}
	a.sec, b.sec = &gen1, &gen1
	round(t, b) // b collects under gen 1
	a.m.SessionEnded(context.Background(), ms.id(1), core.VersionVector{})
	a.sec = &gen2 // rotated while b is away
	a.rep.write(ms.id(0), "notes", nil, "one")
	ms.clock.Advance(2 * time.Minute)
	round(t, a)
	round(t, b)
	if !b.rep.holds(ms.id(0), "one") {
		t.Fatal("b, still on generation 1, missed mail sent after the rotation")
	}
	b.sec = &gen2 // b learns the new generation (from the mail itself, in a real mesh)
	a.rep.write(ms.id(0), "notes", nil, "two")
	round(t, a) // still under generation 1: a has not met b since
	round(t, b)
	if !b.rep.holds(ms.id(0), "two") || ms.relay.count() != 0 {
		t.Fatal("b, on generation 2, missed mail under generation 1")
	}
	// Restarted, b still remembers both generations.
	again := New(b.m.cfg)
	again.mu.Lock()
	again.noteSecretLocked(context.Background(), gen2)
	gens := len(again.secrets)
	again.mu.Unlock()
	if gens != 2 {
		t.Fatalf("restarted mailer collects under %d generations", gens)
	}
}
