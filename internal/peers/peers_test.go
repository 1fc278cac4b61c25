package peers

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
)

// Fakes: sessions that end when closed, a transport whose dials succeed
// only at the addresses the test makes reachable, a roster of fixed
// devices, and a handler that joins every session and hands it to the test.

type fakeSession struct {
	peer core.DeviceID
	gate chan struct{} // when set, Close waits for it
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	why  error
}

func newSession(peer core.DeviceID) *fakeSession {
	return &fakeSession{peer: peer, done: make(chan struct{})}
}

func (s *fakeSession) Peer() core.DeviceID     { return s.peer }
func (s *fakeSession) PeerKey() core.PublicKey { return core.PublicKey{} }
func (s *fakeSession) Done() <-chan struct{}   { return s.done }
func (s *fakeSession) OpenStream(context.Context) (core.Stream, error) {
	return nil, errors.New("fake session: no streams")
}
func (s *fakeSession) AcceptStream(context.Context) (core.Stream, error) {
	return nil, errors.New("fake session: no streams")
}

func (s *fakeSession) Close(reason error) error {
	if s.gate != nil {
		<-s.gate
	}
	s.once.Do(func() {
		s.mu.Lock()
		s.why = reason
		s.mu.Unlock()
		close(s.done)
	})
	return nil
}

func (s *fakeSession) reason() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

func (s *fakeSession) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

type dialRec struct {
	at   time.Time
	addr string
	peer core.DeviceID
}

type fakeTransport struct {
	clock  core.Clock
	accept chan core.Session
	mu     sync.Mutex
	reach  map[string]core.DeviceID // who answers at an address
	dials  []dialRec
	made   []*fakeSession
}

func newTransport(clock core.Clock) *fakeTransport {
	return &fakeTransport{clock: clock, accept: make(chan core.Session), reach: map[string]core.DeviceID{}}
}

func (t *fakeTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dials = append(t.dials, dialRec{at: t.clock.Now(), addr: addr, peer: peer})
	who, ok := t.reach[addr]
	if !ok || (!peer.IsZero() && who != peer) {
		return nil, fmt.Errorf("dial %s: unreachable", addr)
	}
	s := newSession(who)
	t.made = append(t.made, s)
	return s, nil
}

func (t *fakeTransport) Accept(ctx context.Context) (core.Session, error) {
	select {
	case s := <-t.accept:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *fakeTransport) Addr() string { return "fake:self" }
func (t *fakeTransport) Close() error { return nil }

func (t *fakeTransport) dialLog() []dialRec {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.dials)
}

func (t *fakeTransport) setReach(addr string, peer core.DeviceID) {
	t.mu.Lock()
	t.reach[addr] = peer
	t.mu.Unlock()
}

type roster []core.DeviceID

func (r roster) Peers(context.Context) ([]core.DeviceID, error) { return r, nil }

type member struct{}

func (member) SessionsChanged() {}

// joiner joins every session, hands its link to the test and serves it
// until the session ends.
type joiner struct{ links chan *Link }

func (h joiner) Serve(ctx context.Context, l *Link) error {
	l.Join(member{})
	defer l.Leave()
	select {
	case h.links <- l:
	case <-ctx.Done():
	}
	select {
	case <-l.Session().Done():
	case <-ctx.Done():
	}
	_ = l.Session().Close(ctx.Err())
	return nil
}

// mutableAddrs is an AddrSource whose addresses the test changes.
type mutableAddrs struct {
	mu sync.Mutex
	m  map[core.DeviceID][]string
}

func (a *mutableAddrs) Addrs(id core.DeviceID) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.m[id])
}

func (a *mutableAddrs) set(id core.DeviceID, addrs ...string) {
	a.mu.Lock()
	a.m[id] = addrs
	a.mu.Unlock()
}

func device(b byte) core.DeviceID {
	var id core.DeviceID
	id[0] = b
	return id
}

const wait = 5 * time.Second // real-time bound on waits for goroutines

type idleAt struct {
	dialing int
	at      time.Time
}

type rig struct {
	t      *testing.T
	clock  *core.ManualClock
	tr     *fakeTransport
	m      *Manager
	links  chan *Link
	idle   chan idleAt
	cancel context.CancelFunc
}

// newRig starts a Manager for device self (0x10) on a manual clock with a
// seeded Rand, keeping sessions with the roster's devices.
func newRig(t *testing.T, r roster, sources ...AddrSource) *rig {
	t.Helper()
	clock := core.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &rig{t: t, clock: clock, tr: newTransport(clock), links: make(chan *Link, 16), idle: make(chan idleAt, 64)}
	g.m = New(Config{
		Self: device(0x10), Handler: joiner{links: g.links}, Roster: r, Sources: sources,
		Clock: clock, Rand: mrand.NewChaCha8([32]byte{1}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.m.idle = func(dialing int, at time.Time) {
		select {
		case g.idle <- idleAt{dialing, at}:
		case <-ctx.Done():
		}
	}
	if err := g.m.Start(ctx, g.tr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		g.m.Close()
	})
	return g
}

// settle waits until the redial loop, having looked at the peers at the
// clock's current reading, waits with no dial in flight.
func (g *rig) settle() {
	g.t.Helper()
	for {
		select {
		case i := <-g.idle:
			if i.dialing == 0 && i.at.Equal(g.clock.Now()) {
				return
			}
		case <-time.After(wait):
			g.t.Fatal("the redial loop never settled")
		}
	}
}

func (g *rig) nextLink() *Link {
	g.t.Helper()
	select {
	case l := <-g.links:
		return l
	case <-time.After(wait):
		g.t.Fatal("no session reached the handler")
		return nil
	}
}

// TestRedialBacksOffOnManualClock: a device of the roster that cannot be
// reached is redialled with exponential backoff (each gap in [d/2, d] with
// d doubling from redialMin, capped at redialMax), driven step by step by a
// ManualClock: no test time passes in sleeps.
func TestRedialBacksOffOnManualClock(t *testing.T) {
	peer := device(0x20)
	g := newRig(t, roster{peer})
	g.m.Learn(context.Background(), peer, []string{"fake:nowhere"})
	g.settle()
	start := g.clock.Now()
	for g.clock.Now().Sub(start) < 2*time.Minute {
		g.clock.Advance(redialScan)
		g.settle()
	}
	dials := g.tr.dialLog()
	if len(dials) < 8 {
		t.Fatalf("%d dials in 2 min of clock time", len(dials))
	}
	if !dials[0].at.Equal(start) {
		t.Fatalf("first dial at +%v, want at once", dials[0].at.Sub(start))
	}
	for k := 1; k < len(dials); k++ {
		gap := dials[k].at.Sub(dials[k-1].at)
		d := min(redialMax, redialMin<<k)
		// A round runs at least every other scan step, so a due dial waits
		// at most two scans.
		if gap < d/2 || gap > d+2*redialScan {
			t.Fatalf("gap before dial %d is %v, want within [%v, %v]", k+1, gap, d/2, d+2*redialScan)
		}
	}
	// 2 min at the cap of 7.5-15 s: roughly 8 + 120/11 dials; far fewer
	// than a hot loop's.
	if len(dials) > 25 {
		t.Fatalf("%d dials in 2 min", len(dials))
	}
	t.Logf("%d dials in 2 min of clock time, last gap %v", len(dials), dials[len(dials)-1].at.Sub(dials[len(dials)-2].at))
}

// TestRedialFollowsAddressChange: a device whose address an AddrSource
// changes is dialled at its new address at once, without waiting out the
// backoff its old address built up, and the session reaches the handler.
func TestRedialFollowsAddressChange(t *testing.T) {
	peer := device(0x20)
	src := &mutableAddrs{m: map[core.DeviceID][]string{}}
	src.set(peer, "fake:old")
	g := newRig(t, roster{peer}, src)
	g.settle()
	for len(g.tr.dialLog()) < 6 { // backoff now 3.2-6.4 s
		g.clock.Advance(redialScan)
		g.settle()
	}
	before := len(g.tr.dialLog())
	g.tr.setReach("fake:new", peer)
	src.set(peer, "fake:new")
	g.m.Refresh()
	l := g.nextLink() // the clock has not moved
	if l.Peer() != peer || !l.Outbound() {
		t.Fatalf("session with %v, outbound %v", l.Peer().Short(), l.Outbound())
	}
	dials := g.tr.dialLog()
	if len(dials) != before+1 || dials[before].addr != "fake:new" {
		t.Fatalf("dials after the change: %+v", dials[before:])
	}
	// The address that worked enters the address book.
	if got := g.m.Addrs(peer); len(got) != 1 || got[0] != "fake:new" {
		t.Fatalf("address book holds %v", got)
	}
	// While the session lives, nothing is dialled.
	for range 8 {
		g.clock.Advance(redialScan)
		g.settle()
	}
	if n := len(g.tr.dialLog()); n != before+1 {
		t.Fatalf("%d dials while the session was up", n-before-1)
	}
}

// TestRedialAfterSessionEnds: a session that stayed up for redialStable
// is redialled within redialMin of its end, whatever the earlier backoff.
func TestRedialAfterSessionEnds(t *testing.T) {
	peer := device(0x20)
	g := newRig(t, roster{peer})
	g.m.Learn(context.Background(), peer, []string{"fake:peer"})
	g.settle()
	for len(g.tr.dialLog()) < 5 {
		g.clock.Advance(redialScan)
		g.settle()
	}
	g.tr.setReach("fake:peer", peer)
	var l *Link
	for l == nil {
		g.clock.Advance(redialScan)
		select {
		case l = <-g.links:
		default:
			g.settle()
		}
	}
	g.settle()
	g.clock.Advance(redialStable + redialScan)
	g.settle()
	_ = l.Session().Close(errors.New("killed by the test"))
	ended := g.clock.Now()
	g.waitInactive(peer)
	var l2 *Link
	for range 20 {
		g.clock.Advance(redialScan)
		g.settle()
		select {
		case l2 = <-g.links:
		case <-time.After(wait / 5): // the handler's goroutine may lag
		}
		if l2 != nil {
			break
		}
	}
	if l2 == nil || l2 == l || !l2.Outbound() {
		t.Fatal("no new session")
	}
	// The delay is redialMin jittered, dialled at the next scan.
	dials := g.tr.dialLog()
	if d := dials[len(dials)-1].at.Sub(ended); d > redialScan {
		t.Fatalf("redialled %v after a stable session ended", d)
	}
}

// TestOneSessionPerPeer: a newer session of the same peer instance
// replaces the older one, a session from a restarted peer (new instance)
// replaces the stale ones, and when both sides dial at once both keep the
// session dialled by the lower device id, whichever arrives first.
func TestOneSessionPerPeer(t *testing.T) {
	peer := device(0x20) // above self (0x10): self's dials win
	g := newRig(t, roster{})
	ctx := context.Background()
	inbound := func(instance uint64) (*Link, *fakeSession) {
		t.Helper()
		s := newSession(peer)
		g.tr.accept <- s
		l := g.nextLink()
		l.Greet(ctx, instance, nil)
		return l, s
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	one := func() bool { return len(g.m.Connected(core.DeviceID{})) == 1 }

	_, s1 := inbound(1)
	_, s2 := inbound(1)
	if !s1.closed() || !errors.Is(s1.reason(), errReplaced) || s2.closed() {
		t.Fatalf("same instance: older closed %v (%v), newer closed %v", s1.closed(), s1.reason(), s2.closed())
	}
	_, s3 := inbound(2)
	if !s2.closed() || s3.closed() {
		t.Fatalf("restarted peer: stale closed %v, new closed %v", s2.closed(), s3.closed())
	}
	eventually("more than one session with the peer", one)

	// Crossing dials of instance 2: the one self dialled stays, in either
	// order of arrival.
	g.tr.setReach("fake:peer", peer)
	if err := g.m.Connect(ctx, "fake:peer", peer); err != nil {
		t.Fatal(err)
	}
	out := g.nextLink()
	out.Greet(ctx, 2, nil)
	if !s3.closed() || out.Session().(*fakeSession).closed() {
		t.Fatal("the outbound session did not replace the inbound one")
	}
	_, s4 := inbound(2)
	if !s4.closed() || out.Session().(*fakeSession).closed() {
		t.Fatal("a later inbound session of the same instance replaced the one self dialled")
	}
	eventually("more than one session with the peer", one)
}

// TestCutOffClosesAllAndRefuses: CutOff returns without waiting for the
// sessions to close (a caller may hold the replica's write lock), closes
// every session with the device, leaves other devices' sessions alone and
// refuses the device from then on: accepted sessions, Connect, redials and
// its addresses.
func TestCutOffClosesAllAndRefuses(t *testing.T) {
	bad, good := device(0x20), device(0x30)
	g := newRig(t, roster{bad, good})
	ctx := context.Background()
	gate := make(chan struct{})
	var badSessions []*fakeSession
	for range 2 {
		s := newSession(bad)
		s.gate = gate
		g.tr.accept <- s
		g.nextLink()
		badSessions = append(badSessions, s)
	}
	g.tr.setReach("fake:bad", bad)
	if err := g.m.Connect(ctx, "fake:bad", bad); err != nil {
		t.Fatal(err)
	}
	g.nextLink()
	gs := newSession(good)
	g.tr.accept <- gs
	g.nextLink()

	returned := make(chan int)
	go func() { returned <- g.m.CutOff(bad) }()
	select {
	case n := <-returned:
		if n != 3 {
			t.Fatalf("CutOff closed %d sessions, want 3", n)
		}
	case <-time.After(wait):
		close(gate)
		t.Fatal("CutOff waited for the sessions to close")
	}
	close(gate)
	deadline := time.Now().Add(wait)
	for len(g.m.Connected(good)) > 0 || slices.Contains(g.m.Connected(core.DeviceID{}), bad) {
		if time.Now().After(deadline) {
			t.Fatalf("sessions with the revoked device still joined: %d", len(g.m.Connected(good)))
		}
		time.Sleep(time.Millisecond)
	}
	for _, s := range badSessions {
		if !errors.Is(s.reason(), core.ErrUnauthorized) {
			t.Fatalf("closed with %v, want ErrUnauthorized", s.reason())
		}
	}
	if gs.closed() {
		t.Fatal("the other device's session was closed")
	}

	// Refused from now on.
	s := newSession(bad)
	g.tr.accept <- s
	select {
	case <-s.Done():
	case l := <-g.links:
		t.Fatalf("a session of the revoked device reached the handler (%v)", l.Peer().Short())
	case <-time.After(wait):
		t.Fatal("a session of the revoked device stayed open")
	}
	if err := g.m.Connect(ctx, "fake:bad", bad); !errors.Is(err, core.ErrUnauthorized) {
		t.Fatalf("Connect to a revoked device: %v", err)
	}
	g.m.Learn(ctx, bad, []string{"fake:bad"})
	if a := g.m.Addrs(bad); len(a) != 0 {
		t.Fatalf("address book keeps the revoked device at %v", a)
	}
	dials := len(g.tr.dialLog())
	for range 100 { // 25 s of clock: the roster still lists it
		g.clock.Advance(redialScan)
		g.settle()
	}
	for _, d := range g.tr.dialLog()[dials:] {
		if d.peer == bad {
			t.Fatal("the redial loop dialled the revoked device")
		}
	}
}

type addrSession struct {
	core.Session
	addr string
}

func (s addrSession) RemoteAddr() string { return s.addr }

// TestDialableReplacesUnspecifiedHost: a node listening on every interface
// announces "[::]:port"; its peer dials the host the session came from.
func TestDialableReplacesUnspecifiedHost(t *testing.T) {
	got := Dialable([]string{"[::]:4000", "0.0.0.0:4001", ":4002", "10.0.0.1:4003", "mem:3"}, addrSession{addr: "192.0.2.7:5555"})
	want := []string{"192.0.2.7:4000", "192.0.2.7:4001", "192.0.2.7:4002", "10.0.0.1:4003", "mem:3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dialable = %v, want %v", got, want)
	}
	// Without the peer's address, unspecified hosts are left out.
	if got := Dialable([]string{"[::]:4000", "10.0.0.1:4003"}, addrSession{}); fmt.Sprint(got) != "[10.0.0.1:4003]" {
		t.Fatalf("dialable without a remote address = %v", got)
	}
}

// waitInactive waits (in real time: the clock stays) until the Manager
// has dropped every session and dial with peer.
func (g *rig) waitInactive(peer core.DeviceID) {
	g.t.Helper()
	deadline := time.Now().Add(wait)
	for g.m.isActive(peer) {
		if time.Now().After(deadline) {
			g.t.Fatal("the session never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseWaitsForSessions: Close returns only once every Handler it
// started has returned, and a session that arrives after it is closed
// without reaching the Handler.
func TestCloseWaitsForSessions(t *testing.T) {
	g := newRig(t, roster{})
	s := newSession(device(0x20))
	g.tr.accept <- s
	g.nextLink()
	g.cancel()
	g.m.Close()
	if !s.closed() {
		t.Fatal("Close returned before the session's Handler")
	}
	late := newSession(device(0x30))
	g.m.serve(context.Background(), late, false)
	if !late.closed() || !errors.Is(late.reason(), core.ErrClosed) {
		t.Fatalf("a session after Close: closed %v (%v)", late.closed(), late.reason())
	}
	if err := g.m.Connect(context.Background(), "fake:x", device(0x30)); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Connect after Close: %v", err)
	}
}

// memBook is an in-memory BookStore.
type memBook struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (b *memBook) Meta(_ context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	if !ok {
		return nil, core.ErrNotFound
	}
	return slices.Clone(v), nil
}

func (b *memBook) SetMeta(_ context.Context, key string, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = slices.Clone(value)
	return nil
}

// TestAddressBookPersists: addresses learned by one run are dialled by the
// next one at its start, most recent first.
func TestAddressBookPersists(t *testing.T) {
	peer := device(0x20)
	book := &memBook{m: map[string][]byte{}}
	first := New(Config{Self: device(0x10), Handler: joiner{links: make(chan *Link, 1)}, Roster: roster{}, Book: book})
	first.Learn(context.Background(), peer, []string{"fake:old"})
	first.Learn(context.Background(), peer, []string{"fake:new"})
	first.Close()

	clock := core.NewManualClock(time.Unix(0, 0))
	tr := newTransport(clock)
	tr.setReach("fake:new", peer)
	links := make(chan *Link, 1)
	m := New(Config{Self: device(0x10), Handler: joiner{links: links}, Roster: roster{peer}, Book: book, Clock: clock})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); m.Close() })
	if err := m.Start(ctx, tr); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-links:
		if l.Peer() != peer {
			t.Fatalf("session with %s", l.Peer().Short())
		}
	case <-time.After(wait):
		t.Fatal("the restarted manager did not dial the persisted address")
	}
	if d := tr.dialLog(); d[0].addr != "fake:new" {
		t.Fatalf("dialled %+v, want the most recent address first", d)
	}
}

// frozenClock is a Clock (no timers) that never moves, as a test mesh's
// frozen clocks or a host's clock skewed for timestamps.
type frozenClock struct{ at time.Time }

func (c frozenClock) Now() time.Time { return c.at }

// TestRedialWithFrozenClock: a Config.Clock that runs no timers does not
// time the redial loop: a peer unreachable at first is redialled on real
// time even though that clock never moves. Before, the backoff was
// measured on the frozen readings and the peer was never dialled again.
func TestRedialWithFrozenClock(t *testing.T) {
	peer := device(0x20)
	tr := newTransport(frozenClock{})
	links := make(chan *Link, 1)
	m := New(Config{Self: device(0x10), Handler: joiner{links: links}, Roster: roster{peer}, Clock: frozenClock{time.Unix(1e9, 0)}})
	m.Learn(context.Background(), peer, []string{"fake:peer"})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); m.Close() })
	if err := m.Start(ctx, tr); err != nil {
		t.Fatal(err)
	}
	for len(tr.dialLog()) == 0 {
		time.Sleep(time.Millisecond)
	}
	tr.setReach("fake:peer", peer)
	select {
	case <-links:
	case <-time.After(wait):
		t.Fatalf("not redialled within %v (%d dials)", wait, len(tr.dialLog()))
	}
}
