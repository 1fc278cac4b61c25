package federation_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/transport"
)

// streamTap records every byte a node's sessions carry, per stream and
// direction, above the transport's encryption: what the application
// protocol sent and received.
type streamTap struct {
	mu      sync.Mutex
	streams []*streamTapStream
}

type streamTapStream struct {
	core.Stream
	mu      sync.Mutex
	in, out bytes.Buffer
}

func (s *streamTapStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.mu.Lock()
	s.in.Write(p[:n])
	s.mu.Unlock()
	return n, err
}

func (s *streamTapStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	s.mu.Lock()
	s.out.Write(p[:n])
	s.mu.Unlock()
	return n, err
}

type streamTapSession struct {
	core.Session
	t *streamTap
}

// handshaker is a session with a channel binding (pairing.Session).
type handshaker interface{ HandshakeHash() []byte }

// HandshakeHash forwards the session's channel binding (pairing needs it).
func (s streamTapSession) HandshakeHash() []byte {
	if h, ok := s.Session.(handshaker); ok {
		return h.HandshakeHash()
	}
	return nil
}

func (t *streamTap) wrap(st core.Stream, err error) (core.Stream, error) {
	if err != nil {
		return nil, err
	}
	ts := &streamTapStream{Stream: st}
	t.mu.Lock()
	t.streams = append(t.streams, ts)
	t.mu.Unlock()
	return ts, nil
}

func (s streamTapSession) OpenStream(ctx context.Context) (core.Stream, error) {
	return s.t.wrap(s.Session.OpenStream(ctx))
}

func (s streamTapSession) AcceptStream(ctx context.Context) (core.Stream, error) {
	return s.t.wrap(s.Session.AcceptStream(ctx))
}

type streamTapTransport struct {
	core.Transport
	t *streamTap
}

func (tt streamTapTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	s, err := tt.Transport.Dial(ctx, addr, peer)
	if err != nil {
		return nil, err
	}
	return streamTapSession{s, tt.t}, nil
}

func (tt streamTapTransport) Accept(ctx context.Context) (core.Session, error) {
	s, err := tt.Transport.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return streamTapSession{s, tt.t}, nil
}

// received returns every byte the node received on its streams so far.
func (t *streamTap) received() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []byte
	for _, s := range t.streams {
		s.mu.Lock()
		all = append(all, s.in.Bytes()...)
		all = append(all, 0) // no marker spans two streams
		s.mu.Unlock()
	}
	return all
}

// frames counts the frames the node sent (out) or received, by type: each
// stream is a sequence of frames.
func (t *streamTap) frames(out bool) map[wire.Type]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := map[wire.Type]int{}
	for _, s := range t.streams {
		s.mu.Lock()
		b := s.in.Bytes()
		if out {
			b = s.out.Bytes()
		}
		r := bytes.NewReader(append([]byte(nil), b...))
		s.mu.Unlock()
		for {
			f, err := wire.ReadFrame(r, nil, wire.MaxFrameSize)
			if err != nil {
				break
			}
			n[f.Type]++
		}
	}
	return n
}

// tappedQUIC builds the default QUIC transport on loopback, tapped by t.
func tappedQUIC(t *streamTap) federation.TransportFactory {
	return func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		q, err := transport.NewQUIC(ctx, transport.QUICConfig{ListenAddr: "127.0.0.1:0", Identity: p.Identity, Authorizer: p.Authorizer, Keys: p.Keys, Logger: p.Logger})
		if err != nil {
			return nil, err
		}
		return streamTapTransport{q, t}, nil
	}
}

// tappedNode is a node on a libSQL file in dir, over tapped QUIC, started.
func tappedNode(t *testing.T, dir, name string, tp *streamTap, colls map[string]federation.Policy) *federation.Node {
	t.Helper()
	n, err := federation.New(federation.Config{
		Dir: dir, Device: federation.DeviceConfig{Name: name},
		Network:     federation.NetworkConfig{Transport: tappedQUIC(tp)},
		Collections: colls,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	require.NoError(t, n.Start(context.Background()))
	return n
}

// waitPolicy waits until n's registry gives n the sync policy pol (then
// n no longer wants what it leaves behind).
func waitPolicy(t *testing.T, n *federation.Node, pol []byte) {
	t.Helper()
	require.Eventually(t, func() bool {
		devs, err := n.Devices(context.Background())
		for _, d := range devs {
			if err == nil && d.ID == n.DeviceID() && bytes.Equal(d.Policy, pol) {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "%s learns its policy", n.DeviceID().Short())
}

// repairFrames are the frame types of a Merkle repair.
var repairFrames = []wire.Type{wire.TypeRepair, wire.TypeRoots, wire.TypeMerkleReq, wire.TypeMerkleResp, wire.TypeFetch, wire.TypeRecords, wire.TypeRepaired}

func countRepairFrames(tp *streamTap) int {
	n := 0
	for _, out := range []bool{false, true} {
		f := tp.frames(out)
		for _, t := range repairFrames {
			n += f[t]
		}
	}
	return n
}

// waitRecord waits until n holds (coll, key) and returns it.
func waitRecord(t *testing.T, n *federation.Node, coll, key string) federation.Record {
	t.Helper()
	var r federation.Record
	require.Eventually(t, func() bool {
		var err error
		r, err = n.GetRecord(context.Background(), coll, key)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "%s/%s never arrived", coll, key)
	return r
}

// TestSummaryDeviceNeverReceivesFullMessage: a watch whose device policy
// is summary for conversations receives the versions of every message but
// the values only of the summaries: no byte of a message crosses its
// sessions until it fetches that one message. Its partial replica has the
// full replica's roots, and the pair runs without a single repair frame
// or an unsettled repair. libSQL files, QUIC on loopback.
func TestSummaryDeviceNeverReceivesFullMessage(t *testing.T) {
	ctx := context.Background()
	var lapTap, watchTap streamTap
	laptop := tappedNode(t, t.TempDir(), "laptop", &lapTap, nil)
	watch := tappedNode(t, t.TempDir(), "watch", &watchTap, nil)
	pairInto(t, laptop, watch)
	pol := []byte(`{"collections": {"conversations": {"mode": "summary"}}}`)
	require.NoError(t, laptop.SetDevicePolicy(ctx, watch.DeviceID(), pol))
	waitPolicy(t, watch, pol)

	mark := marker(t, "value")
	msg := func(i int) string { return convLog(t, fmt.Sprintf("%s message %d: the whole text of it", mark, i)) }
	const n = 20
	for i := 0; i < n; i++ {
		require.NoError(t, laptop.Put(ctx, federation.CollectionConversation, fmt.Sprintf("m%02d", i), []byte(msg(i))))
	}
	summary := convLog(t, mark+" SUMMARY of the day")
	require.NoError(t, laptop.PutSummary(ctx, federation.CollectionConversation, "summary-1", []byte(summary)))

	s := waitRecord(t, watch, federation.CollectionConversation, "summary-1")
	require.True(t, s.Summary)
	require.False(t, s.Stub)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("m%02d", i)
		r := waitRecord(t, watch, federation.CollectionConversation, key)
		require.True(t, r.Stub, key)
		require.Equal(t, len(msg(i)), r.Size(), key)
		require.Equal(t, core.ValueDigest([]byte(msg(i))), r.Digest(), key)
		_, err := watch.Get(ctx, federation.CollectionConversation, key)
		require.ErrorIs(t, err, federation.ErrNotFetched, key)
	}
	v, err := watch.Get(ctx, federation.CollectionConversation, "summary-1")
	require.NoError(t, err)
	require.Equal(t, summary, string(v))

	// Every byte the watch received: the summary (the tap sees plain
	// application bytes), no message.
	got := watchTap.received()
	require.True(t, bytes.Contains(got, []byte(summary)), "the tap sees the summary")
	require.False(t, bytes.Contains(got, []byte(mark+" message")), "a message reached the watch")

	// Partial replica, equal roots; nothing to repair for a while.
	require.Eventually(t, func() bool {
		return bytes.Equal(fmt.Append(nil, laptop.Roots()), fmt.Append(nil, watch.Roots()))
	}, 10*time.Second, 10*time.Millisecond, "roots differ")
	before := countRepairFrames(&watchTap)
	time.Sleep(3500 * time.Millisecond) // three heartbeats: three CaughtUp with roots each way
	require.Equal(t, before, countRepairFrames(&watchTap), "repair frames on the watch's sessions")
	require.Zero(t, before, "repair frames on the watch's sessions")
	for _, nd := range []*federation.Node{laptop, watch} {
		st, err := nd.Stats(ctx)
		require.NoError(t, err)
		require.Zero(t, st.RepairsUnsettled)
	}

	// The host fetches one message: it arrives, and only it.
	require.NoError(t, watch.Fetch(ctx, federation.CollectionConversation, "m07"))
	waitValue(t, watch, federation.CollectionConversation, "m07", msg(7))
	got = watchTap.received()
	require.True(t, bytes.Contains(got, []byte(msg(7))))
	require.Equal(t, 1, bytes.Count(got, []byte(mark+" message")), "only the fetched message crossed")
	r, err := watch.GetRecord(ctx, federation.CollectionConversation, "m07")
	require.NoError(t, err)
	require.False(t, r.Stub)
	require.Equal(t, laptop.Roots(), watch.Roots(), "a fetched value changes no root")
}

// onDemand is a host policy with one on-demand collection, "vectors".
func onDemand(mode federation.Mode) map[string]federation.Policy {
	return map[string]federation.Policy{"vectors": {Priority: federation.PriorityLow, Mode: mode}}
}

// TestOnDemandKeysSizesDigestsThenFetch: keys, sizes and digests of an
// on-demand collection reach a peer, values only when fetched; a tombstone
// travels as it is.
func TestOnDemandKeysSizesDigestsThenFetch(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap streamTap
	a := tappedNode(t, t.TempDir(), "a", &aTap, onDemand(federation.ModeOnDemand))
	b := tappedNode(t, t.TempDir(), "b", &bTap, onDemand(federation.ModeOnDemand))
	pairInto(t, a, b)
	mark := marker(t, "value")
	val := func(i int) string { return fmt.Sprintf("%s vector %d %s", mark, i, bytes.Repeat([]byte{'x'}, i*100)) }
	for i := 0; i < 10; i++ {
		require.NoError(t, a.Put(ctx, "vectors", fmt.Sprint(i), []byte(val(i))))
	}
	require.NoError(t, a.Delete(ctx, "vectors", "9"))
	for i := 0; i < 9; i++ {
		r := waitRecord(t, b, "vectors", fmt.Sprint(i))
		require.True(t, r.Stub)
		require.Nil(t, r.Value)
		require.Equal(t, len(val(i)), r.Size())
		require.Equal(t, core.ValueDigest([]byte(val(i))), r.Digest())
	}
	require.Eventually(t, func() bool {
		r, err := b.GetRecord(ctx, "vectors", "9")
		return err == nil && r.Deleted && !r.Stub
	}, 10*time.Second, 5*time.Millisecond)
	require.False(t, bytes.Contains(bTap.received(), []byte(mark+" vector")), "a value crossed before Fetch")

	require.NoError(t, b.Fetch(ctx, "vectors", "2", "5", "9", "missing"))
	waitValue(t, b, "vectors", "2", val(2))
	waitValue(t, b, "vectors", "5", val(5))
	require.Equal(t, 2, bytes.Count(bTap.received(), []byte(mark+" vector")))
	_, err := b.Get(ctx, "vectors", "3")
	require.ErrorIs(t, err, federation.ErrNotFetched)
	require.Equal(t, a.Roots(), b.Roots())
}

// TestOnDemandToFullBackfills: when a collection's policy changes from
// on-demand to full, every stub's value is fetched: after a restart with
// a new host Config, and after a device policy change in the registry.
func TestOnDemandToFullBackfills(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap, cTap streamTap
	a := tappedNode(t, t.TempDir(), "a", &aTap, onDemand(federation.ModeOnDemand))
	bDir := t.TempDir()
	b := tappedNode(t, bDir, "b", &bTap, onDemand(federation.ModeOnDemand))
	c := tappedNode(t, t.TempDir(), "c", &cTap, onDemand(federation.ModeOnDemand))
	pairInto(t, a, b)
	pairInto(t, a, c)
	for i := 0; i < 30; i++ {
		require.NoError(t, a.Put(ctx, "vectors", fmt.Sprint(i), []byte(fmt.Sprint("value ", i))))
	}
	for _, n := range []*federation.Node{b, c} {
		for i := 0; i < 30; i++ {
			require.True(t, waitRecord(t, n, "vectors", fmt.Sprint(i)).Stub)
		}
	}
	// The host of b now wants the collection whole.
	require.NoError(t, b.Close())
	b = tappedNode(t, bDir, "b", &bTap, onDemand(federation.ModeImmediate))
	require.NoError(t, b.Connect(ctx, a.Addr(), a.DeviceID()))
	for i := 0; i < 30; i++ {
		waitValue(t, b, "vectors", fmt.Sprint(i), fmt.Sprint("value ", i))
	}
	// c's device policy changes to immediate: a sends it values, and c
	// backfills what it holds as stubs.
	require.NoError(t, a.SetDevicePolicy(ctx, c.DeviceID(), []byte(`{"collections": {"vectors": {"mode": "immediate"}}}`)))
	for i := 0; i < 30; i++ {
		waitValue(t, c, "vectors", fmt.Sprint(i), fmt.Sprint("value ", i))
	}
	require.NoError(t, a.Put(ctx, "vectors", "new", []byte("sent whole")))
	waitValue(t, c, "vectors", "new", "sent whole")
	// b's host wants the collection whole: a stub of a new write is
	// fetched as it arrives.
	waitValue(t, b, "vectors", "new", "sent whole")
}

// TestWantedListSurvivesRestartServedByAnotherPeer: a fetch asked while no
// device holding the values is online survives a restart of the fetching
// device, and is served by another device that holds them while the
// writer stays offline; keys not asked for stay stubs.
func TestWantedListSurvivesRestartServedByAnotherPeer(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap, cTap streamTap
	bDir, cDir := t.TempDir(), t.TempDir()
	a := tappedNode(t, t.TempDir(), "writer", &aTap, onDemand(federation.ModeOnDemand))
	b := tappedNode(t, bDir, "fetcher", &bTap, onDemand(federation.ModeOnDemand))
	c := tappedNode(t, cDir, "full", &cTap, onDemand(federation.ModeImmediate)) // wants every value
	pairInto(t, a, b)
	pairInto(t, a, c)
	val := func(i int) string { return fmt.Sprintf("vector %d of the writer", i) }
	for i := 0; i < 5; i++ {
		require.NoError(t, a.Put(ctx, "vectors", fmt.Sprint(i), []byte(val(i))))
	}
	for i := 0; i < 5; i++ {
		waitValue(t, c, "vectors", fmt.Sprint(i), val(i)) // c fetched them by itself
		require.True(t, waitRecord(t, b, "vectors", fmt.Sprint(i)).Stub)
	}
	// Every holder goes offline; the fetcher asks, then restarts.
	require.NoError(t, a.Close())
	require.NoError(t, c.Close())
	require.NoError(t, b.Fetch(ctx, "vectors", "1", "3"))
	time.Sleep(200 * time.Millisecond)
	_, err := b.Get(ctx, "vectors", "1")
	require.ErrorIs(t, err, federation.ErrNotFetched, "nobody online holds it")
	require.NoError(t, b.Close())
	b = tappedNode(t, bDir, "fetcher", &bTap, onDemand(federation.ModeOnDemand))
	c = tappedNode(t, cDir, "full", &cTap, onDemand(federation.ModeImmediate))
	require.NoError(t, b.Connect(ctx, c.Addr(), c.DeviceID()))
	waitValue(t, b, "vectors", "1", val(1))
	waitValue(t, b, "vectors", "3", val(3))
	for _, k := range []string{"0", "2", "4"} {
		_, err := b.Get(ctx, "vectors", k)
		require.ErrorIs(t, err, federation.ErrNotFetched, "key %s was not asked for", k)
	}
}

// liar rewrites the values of the Values frames a node sends (one byte
// flipped, the length kept): a peer that lies about a value.
type liar struct{ core.Stream }

func (l liar) Write(p []byte) (int, error) {
	if len(p) > wire.HeaderSize && wire.Type(p[0]) == wire.TypeValues {
		p = append([]byte(nil), p...)
		p[len(p)-1] ^= 0xFF // the last value's last byte
	}
	return l.Stream.Write(p)
}

type liarSession struct{ streamTapSession }

func (s liarSession) OpenStream(ctx context.Context) (core.Stream, error) {
	st, err := s.streamTapSession.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return liar{st}, nil
}

type liarTransport struct{ streamTapTransport }

func (tt liarTransport) Dial(ctx context.Context, addr string, peer core.DeviceID) (core.Session, error) {
	s, err := tt.streamTapTransport.Dial(ctx, addr, peer)
	if err != nil {
		return nil, err
	}
	return liarSession{s.(streamTapSession)}, nil
}

func (tt liarTransport) Accept(ctx context.Context) (core.Session, error) {
	s, err := tt.streamTapTransport.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return liarSession{s.(streamTapSession)}, nil
}

// TestLyingPeerValueRefused: a value whose digest is not the stub's is
// refused (the key stays a stub, stays wanted, and the refusal is
// audited), and the key is then served by an honest device.
func TestLyingPeerValueRefused(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap, cTap streamTap
	lying := func(ctx context.Context, p federation.TransportParams) (federation.Transport, error) {
		tr, err := tappedQUIC(&aTap)(ctx, p)
		if err != nil {
			return nil, err
		}
		return liarTransport{tr.(streamTapTransport)}, nil
	}
	// The writer sends vectors whole (its host policy), except to the
	// fetcher, whose device policy is on-demand; it lies in Values frames.
	a, err := federation.New(federation.Config{Dir: t.TempDir(), Device: federation.DeviceConfig{Name: "liar"},
		Network: federation.NetworkConfig{Transport: lying}, Collections: onDemand(federation.ModeImmediate)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	require.NoError(t, a.Start(ctx))
	b := tappedNode(t, t.TempDir(), "fetcher", &bTap, onDemand(federation.ModeImmediate))
	pairInto(t, a, b)
	pol := []byte(`{"collections": {"vectors": {"mode": "on-demand"}}}`)
	require.NoError(t, a.SetDevicePolicy(ctx, b.DeviceID(), pol))
	waitPolicy(t, b, pol)
	require.NoError(t, a.Put(ctx, "vectors", "k", []byte("the true value")))
	require.True(t, waitRecord(t, b, "vectors", "k").Stub)
	require.NoError(t, b.Fetch(ctx, "vectors", "k"))
	require.Eventually(t, func() bool { return bTap.frames(false)[wire.TypeValues] > 0 }, 10*time.Second, 5*time.Millisecond, "the liar answers")
	require.Eventually(t, func() bool {
		entries, err := b.Audit().Query(ctx, audit.Filter{Kinds: []audit.Kind{audit.KindRefusal}})
		require.NoError(t, err)
		for _, e := range entries {
			if r, ok := e.Detail.Get("reason"); ok && r.Text == "value-digest" {
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond, "the refusal is audited")
	_, err = b.Get(ctx, "vectors", "k")
	require.ErrorIs(t, err, federation.ErrNotFetched, "the forged value was refused")

	// An honest device that got the value whole from the writer serves
	// the key that stayed wanted.
	c := tappedNode(t, t.TempDir(), "honest", &cTap, onDemand(federation.ModeImmediate))
	pairInto(t, a, c)
	waitValue(t, c, "vectors", "k", "the true value")
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(b.Peers(), func(p federation.PeerStatus) bool { return p.Device == c.DeviceID() }) ||
			b.Connect(ctx, c.Addr(), c.DeviceID()) == nil
	}, 10*time.Second, 50*time.Millisecond, "b reaches c")
	waitValue(t, b, "vectors", "k", "the true value")
}

// TestNewerVersionSupersedesWanted: a key asked for while no holder is
// online gets a newer version meanwhile: the newer value is what arrives
// (it matches the newer stub), and a key written here meanwhile keeps
// the value written here.
func TestNewerVersionSupersedesWanted(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap streamTap
	aDir := t.TempDir()
	a := tappedNode(t, aDir, "writer", &aTap, onDemand(federation.ModeOnDemand))
	b := tappedNode(t, t.TempDir(), "fetcher", &bTap, onDemand(federation.ModeOnDemand))
	pairInto(t, a, b)
	require.NoError(t, a.Put(ctx, "vectors", "k", []byte("old")))
	require.NoError(t, a.Put(ctx, "vectors", "mine", []byte("theirs")))
	require.True(t, waitRecord(t, b, "vectors", "k").Stub)
	require.True(t, waitRecord(t, b, "vectors", "mine").Stub)
	require.NoError(t, a.Close()) // the only holder goes away
	require.NoError(t, b.Fetch(ctx, "vectors", "k", "mine"))
	require.NoError(t, b.Put(ctx, "vectors", "mine", []byte("written here")))

	a = tappedNode(t, aDir, "writer", &aTap, onDemand(federation.ModeOnDemand))
	require.NoError(t, a.Put(ctx, "vectors", "k", []byte("new")))
	require.NoError(t, b.Connect(ctx, a.Addr(), a.DeviceID()))
	waitValue(t, b, "vectors", "k", "new")
	require.Eventually(t, func() bool {
		r, err := a.GetRecord(ctx, "vectors", "mine")
		return err == nil && r.Stub && r.Digest() == core.ValueDigest([]byte("written here"))
	}, 10*time.Second, 5*time.Millisecond, "a gets b's version, as a stub")
	v, err := b.Get(ctx, "vectors", "mine")
	require.NoError(t, err)
	require.Equal(t, "written here", string(v))
	require.False(t, bytes.Contains(bTap.received(), []byte("old")), "the superseded value never travelled")
}

// TestWithheldCollectionTravelsAsStubs: a device policy that keeps a
// collection from a device (local-only for it) sends that device stubs,
// so its version vector stays contiguous: the changes written after them
// arrive whole, and the device's vector catches up with the writer's.
func TestWithheldCollectionTravelsAsStubs(t *testing.T) {
	ctx := context.Background()
	var aTap, bTap streamTap
	a := tappedNode(t, t.TempDir(), "laptop", &aTap, nil)
	b := tappedNode(t, t.TempDir(), "phone", &bTap, nil)
	pairInto(t, a, b)
	pol := []byte(`{"collections": {"notes": {"mode": "local-only"}}}`)
	require.NoError(t, a.SetDevicePolicy(ctx, b.DeviceID(), pol))
	waitPolicy(t, b, pol)
	mark := marker(t, "value")
	for i := 0; i < 5; i++ {
		require.NoError(t, a.Put(ctx, "notes", fmt.Sprint(i), []byte(mark+" note")))
	}
	require.NoError(t, a.Put(ctx, "todo", "after", []byte("arrives whole")))
	waitValue(t, b, "todo", "after", "arrives whole")
	for i := 0; i < 5; i++ {
		r := waitRecord(t, b, "notes", fmt.Sprint(i))
		require.True(t, r.Stub)
	}
	require.False(t, bytes.Contains(bTap.received(), []byte(mark)), "a withheld value reached the phone")
	require.Eventually(t, func() bool {
		sa, errA := a.Stats(ctx)
		sb, errB := b.Stats(ctx)
		return errA == nil && errB == nil && sa.VersionVector.Compare(sb.VersionVector) == core.Equal
	}, 10*time.Second, 10*time.Millisecond, "version vectors meet")
	require.Equal(t, a.Roots(), b.Roots())
}

// TestSummaryPolicySetWhileOffline: the watch's summary policy is set
// while it is offline and messages are written; on reconnecting it gets
// the policy and the messages together (possibly in one batch), and still
// no message crosses: what it wants is decided once the policy is in force.
func TestSummaryPolicySetWhileOffline(t *testing.T) {
	ctx := context.Background()
	var lapTap, watchTap streamTap
	watchDir := t.TempDir()
	laptop := tappedNode(t, t.TempDir(), "laptop", &lapTap, nil)
	watch := tappedNode(t, watchDir, "watch", &watchTap, nil)
	pairInto(t, laptop, watch)
	require.NoError(t, watch.Close())
	pol := []byte(`{"collections": {"conversations": {"mode": "summary"}}}`)
	require.NoError(t, laptop.SetDevicePolicy(ctx, watch.DeviceID(), pol))
	mark := marker(t, "value")
	for i := 0; i < 10; i++ {
		require.NoError(t, laptop.Put(ctx, federation.CollectionConversation, fmt.Sprint(i), []byte(convLog(t, mark+" message"))))
	}
	var tap2 streamTap
	watch = tappedNode(t, watchDir, "watch", &tap2, nil)
	require.NoError(t, watch.Connect(ctx, laptop.Addr(), laptop.DeviceID()))
	for i := 0; i < 10; i++ {
		require.True(t, waitRecord(t, watch, federation.CollectionConversation, fmt.Sprint(i)).Stub)
	}
	time.Sleep(300 * time.Millisecond)
	require.False(t, bytes.Contains(tap2.received(), []byte(mark)), "a message reached the watch")
	for i := 0; i < 10; i++ {
		_, err := watch.Get(ctx, federation.CollectionConversation, fmt.Sprint(i))
		require.ErrorIs(t, err, federation.ErrNotFetched)
	}
}

// convLog returns a conversation value (a crdt.Log encoding) holding one
// message whose body is body.
func convLog(t *testing.T, body string) string {
	t.Helper()
	l := &crdt.Log{}
	require.NoError(t, l.Append(crdt.Message{ID: "m", Time: 1, Body: []byte(body)}))
	return string(l.Encode())
}
