package pairing

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

// The transport's sessions are what Host and Join run on.
var _ Session = (*transport.Session)(nil)

// anyone admits every device that proves a key: the transport half of
// "authenticated but not yet trusted" (the node restricts such sessions to
// the pairing stream).
type anyone struct{}

func (anyone) Authorize(context.Context, core.DeviceID, core.PublicKey) error { return nil }

// device is one in-process device on a Mem network.
type device struct {
	id *identity.Identity
	tr core.Transport
}

func newDevice(t *testing.T, net *transport.MemNetwork) *device {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := net.Listen(id, anyone{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return &device{id: id, tr: tr}
}

// newQUICDevice is a device on a real QUIC transport on loopback.
func newQUICDevice(t *testing.T) *device {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transport.NewQUIC(context.Background(), transport.QUICConfig{Identity: id, Authorizer: anyone{}, ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return &device{id: id, tr: tr}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// link is a pairing stream between two devices: the dialler's end (the
// joiner's) and the acceptor's.
type link struct {
	dialSess, acceptSess *transport.Session
	dialSt, acceptSt     core.Stream
}

// connect dials from → to (XX: the dialler does not pin the peer) and
// opens one stream.
func connect(t *testing.T, from, to *device) link {
	t.Helper()
	ctx := ctxT(t)
	type acc struct {
		s   *transport.Session
		st  core.Stream
		err error
	}
	ch := make(chan acc, 1)
	go func() {
		s, err := to.tr.Accept(ctx)
		if err != nil {
			ch <- acc{err: err}
			return
		}
		st, err := s.AcceptStream(ctx)
		ch <- acc{s: s.(*transport.Session), st: st, err: err}
	}()
	s, err := from.tr.Dial(ctx, to.tr.Addr(), core.DeviceID{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { _ = s.Close(nil); _ = a.s.Close(nil) })
	return link{dialSess: s.(*transport.Session), acceptSess: a.s, dialSt: st, acceptSt: a.st}
}

// inviteFixture is an inviter with one open invitation.
type inviteFixture struct {
	dev     *device
	inv     registry.Invitation
	tracker *registry.Tracker
	now     time.Time
}

func newInvite(t *testing.T, dev *device) inviteFixture {
	t.Helper()
	now := time.Date(2026, 11, 28, 21, 0, 0, 0, time.UTC)
	inv, err := registry.NewInvitation(dev.id, []string{dev.tr.Addr()}, now.Add(10*time.Minute), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := registry.NewTracker(0)
	if err := tr.Add(inv); err != nil {
		t.Fatal(err)
	}
	return inviteFixture{dev: dev, inv: inv, tracker: tr, now: now}
}

// hostParams are the inviter's params with approve as the user.
func (f inviteFixture) hostParams(approve func(context.Context, Request) (bool, error)) HostParams {
	return HostParams{
		Identity: f.dev.id, Name: "Anna's laptop", Type: registry.TypeLaptop,
		Invitation: f.inv, Tracker: f.tracker, Approve: approve,
		Handover: Handover{Registry: []byte("signed add op"), Secret: []byte("sealed mesh secret")},
		Now:      func() time.Time { return f.now },
	}
}

// outcome is what one side of a run returned.
type outcome struct {
	res Result
	err error
}

// pair runs Host and Join concurrently on l and returns both outcomes.
func pair(t *testing.T, l link, hp HostParams, jp JoinParams) (host, join outcome) {
	t.Helper()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		host.res, host.err = Host(ctx, l.acceptSess, l.acceptSt, hp)
	}()
	join.res, join.err = Join(ctx, l.dialSess, l.dialSt, jp)
	wg.Wait()
	return host, join
}

// users simulates the two people comparing screens: each side records the
// SAS it shows and answers yes only if the other side shows the same.
type users struct {
	inviterSAS, joinerSAS chan string
}

func newUsers() *users {
	return &users{inviterSAS: make(chan string, 1), joinerSAS: make(chan string, 1)}
}

func (u *users) approve(ctx context.Context, r Request) (bool, error) {
	u.inviterSAS <- r.SAS
	select {
	case other := <-u.joinerSAS:
		u.joinerSAS <- other
		return other == r.SAS, nil
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

func (u *users) show(r Request) { u.joinerSAS <- r.SAS }

func (u *users) confirm(ctx context.Context, r Request) (bool, error) {
	select {
	case other := <-u.inviterSAS:
		u.inviterSAS <- other
		return other == r.SAS, nil
	case <-ctx.Done():
		return false, context.Cause(ctx)
	}
}

// refusalFrame is the exact bytes of a Refuse message with code c.
func refusalFrame(c refuseCode) []byte {
	b, _ := wire.AppendFrame(nil, typeRefuse, encodeRefuse(c))
	return b
}

// readAll reads st to its end (the peer closes it when its run returns).
func readAll(t *testing.T, st core.Stream) []byte {
	t.Helper()
	var buf bytes.Buffer
	_, err := io.Copy(&buf, st)
	if err != nil && buf.Len() == 0 {
		t.Logf("read to end: %v", err)
	}
	return buf.Bytes()
}

// memStream is a stream whose reads come from a fixed input and whose
// writes are recorded, for fuzzing one side without a peer.
type memStream struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (m *memStream) Read(p []byte) (int, error)  { return m.in.Read(p) }
func (m *memStream) Write(p []byte) (int, error) { return m.out.Write(p) }
func (m *memStream) Close() error                { return nil }
func (m *memStream) CloseWrite() error           { return nil }

// fakeSession is a Session with a fixed peer and handshake hash.
type fakeSession struct {
	peer *identity.Identity
	hash []byte
}

func (f fakeSession) Peer() core.DeviceID     { return f.peer.DeviceID() }
func (f fakeSession) PeerKey() core.PublicKey { return f.peer.PublicKey() }
func (f fakeSession) HandshakeHash() []byte   { return f.hash }
