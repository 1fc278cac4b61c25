package federation_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/memstore"
)

// storeKinds runs node-level tests against every Store implementation.
var storeKinds = []struct {
	name string
	open func(t *testing.T) federation.Store
}{
	{"mem", func(t *testing.T) federation.Store { return memstore.New() }},
	{"libsql", func(t *testing.T) federation.Store {
		s, err := libsqlstore.Open(context.Background(), t.TempDir()+"/t.db", libsqlstore.Options{})
		require.NoError(t, err)
		return s
	}},
}

// fakeClock is a settable clock for HLC tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func newNode(t *testing.T, st federation.Store, mut ...func(*federation.Config)) *federation.Node {
	t.Helper()
	cfg := federation.Config{Store: st}
	for _, m := range mut {
		m(&cfg)
	}
	n, err := federation.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func forEachStore(t *testing.T, f func(t *testing.T, open func(t *testing.T) federation.Store)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k.open) })
	}
}

func TestPutGetDeleteScan(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(t *testing.T) federation.Store) {
		ctx := context.Background()
		n := newNode(t, open(t))
		require.NoError(t, n.Put(ctx, "notes", "b", []byte("B")))
		require.NoError(t, n.Put(ctx, "notes", "a", []byte("A")))
		require.NoError(t, n.Put(ctx, "notes", "c", []byte("C")))
		v, err := n.Get(ctx, "notes", "a")
		require.NoError(t, err)
		require.Equal(t, "A", string(v))

		require.NoError(t, n.Delete(ctx, "notes", "b"))
		_, err = n.Get(ctx, "notes", "b")
		require.ErrorIs(t, err, federation.ErrNotFound)
		rec, err := n.GetRecord(ctx, "notes", "b")
		require.NoError(t, err)
		require.True(t, rec.Deleted, "a delete leaves a tombstone")
		require.Equal(t, n.DeviceID(), rec.Origin)

		var keys []string
		require.NoError(t, n.Scan(ctx, "notes", federation.KeyRange{}, func(r federation.Record) error {
			keys = append(keys, r.Key)
			return nil
		}))
		require.Equal(t, []string{"a", "c"}, keys, "scan skips tombstones, ascending")

		keys = nil
		require.NoError(t, n.Scan(ctx, "notes", federation.KeyRange{IncludeDeleted: true}, func(r federation.Record) error {
			keys = append(keys, r.Key)
			return nil
		}))
		require.Equal(t, []string{"a", "b", "c"}, keys)

		_, err = n.Get(ctx, "other", "a")
		require.ErrorIs(t, err, federation.ErrNotFound)
		require.ErrorIs(t, n.Put(ctx, "", "k", nil), federation.ErrInvalidArgument)
	})
}

func TestFailedUpdateLeavesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(t *testing.T) federation.Store) {
		ctx := context.Background()
		n := newNode(t, open(t))
		require.NoError(t, n.Put(ctx, "c", "keep", []byte("old")))
		before, err := n.Stats(ctx)
		require.NoError(t, err)

		boom := errors.New("boom")
		err = n.Update(ctx, func(tx *federation.Tx) error {
			require.NoError(t, tx.Put("c", "keep", []byte("new")))
			require.NoError(t, tx.Put("c", "fresh", []byte("x")))
			require.NoError(t, tx.Delete("c", "keep"))
			_, err := tx.Get("c", "keep")
			require.ErrorIs(t, err, federation.ErrNotFound, "a transaction sees its own delete")
			return boom
		})
		require.ErrorIs(t, err, boom)

		v, err := n.Get(ctx, "c", "keep")
		require.NoError(t, err)
		require.Equal(t, "old", string(v))
		_, err = n.Get(ctx, "c", "fresh")
		require.ErrorIs(t, err, federation.ErrNotFound)
		after, err := n.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, before.Store, after.Store, "a failed Update adds no record and no changelog entry")
		require.Equal(t, before.VersionVector, after.VersionVector)

		// A panicking transaction leaves nothing either, and the node stays usable.
		require.Panics(t, func() {
			_ = n.Update(ctx, func(tx *federation.Tx) error {
				_ = tx.Put("c", "panic", []byte("x"))
				panic("host bug")
			})
		})
		_, err = n.Get(ctx, "c", "panic")
		require.ErrorIs(t, err, federation.ErrNotFound)

		// A transaction used after it finished is refused.
		var leaked *federation.Tx
		require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error { leaked = tx; return nil }))
		require.ErrorIs(t, leaked.Put("c", "late", nil), federation.ErrTxnDone)
	})
}

func TestTransactionIsAtomicAndSequenced(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(t *testing.T) federation.Store) {
		ctx := context.Background()
		n := newNode(t, open(t))
		require.NoError(t, n.Update(ctx, func(tx *federation.Tx) error {
			for i := range 10 {
				if err := tx.Put("c", fmt.Sprintf("k%02d", i), []byte{byte(i)}); err != nil {
					return err
				}
			}
			return tx.Put("c", "k00", []byte("last write wins inside a txn"))
		}))
		st, err := n.Stats(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 10, st.Store.Records)
		require.EqualValues(t, 10, st.Store.Changes)
		require.EqualValues(t, 10, st.VersionVector[n.DeviceID()])
		v, err := n.Get(ctx, "c", "k00")
		require.NoError(t, err)
		require.Equal(t, "last write wins inside a txn", string(v))
		var ts []federation.Timestamp
		require.NoError(t, n.Scan(ctx, "c", federation.KeyRange{}, func(r federation.Record) error {
			ts = append(ts, r.Timestamp)
			require.EqualValues(t, r.Seq, r.Context[n.DeviceID()], "a record's context includes its own write")
			return nil
		}))
		for _, x := range ts {
			require.Equal(t, ts[0], x, "one transaction, one timestamp")
		}
	})
}

func TestHLCMonotonicWhenClockJumpsBack(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func(t *testing.T) federation.Store) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
		st := open(t)
		n := newNode(t, st, func(c *federation.Config) { c.Clock = clock })
		var last federation.Timestamp
		write := func(i int) {
			key := fmt.Sprintf("k%d", i)
			require.NoError(t, n.Put(ctx, "c", key, []byte("v")))
			r, err := n.GetRecord(ctx, "c", key)
			require.NoError(t, err)
			require.Greater(t, r.Timestamp, last, "timestamps strictly increase (write %d)", i)
			last = r.Timestamp
		}
		for i := range 5 {
			write(i)
		}
		clock.Set(clock.Now().Add(-time.Hour)) // the wall clock jumps back an hour
		for i := 5; i < 10; i++ {
			write(i)
		}
		clock.Set(clock.Now().Add(2 * time.Hour))
		write(10)
		require.Equal(t, clock.Now().UnixMilli(), last.Millis(), "the clock follows physical time again once it is ahead")
	})
}

func TestHLCSurvivesRestartWithClockBehind(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	n, err := federation.New(federation.Config{Dir: dir, Clock: clock})
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, "c", "a", []byte("1")))
	first, err := n.GetRecord(ctx, "c", "a")
	require.NoError(t, err)
	require.NoError(t, n.Close())

	clock.Set(clock.Now().Add(-24 * time.Hour))
	n, err = federation.New(federation.Config{Dir: dir, Clock: clock})
	require.NoError(t, err)
	defer n.Close()
	require.NoError(t, n.Put(ctx, "c", "a", []byte("2")))
	second, err := n.GetRecord(ctx, "c", "a")
	require.NoError(t, err)
	require.Greater(t, second.Timestamp, first.Timestamp)
	// A restart is a new replica incarnation of the same device: its
	// sequence numbers start over under a new replica id, so that an older
	// copy of the store could never reuse them (replica.go).
	require.NotEqual(t, first.Origin, second.Origin, "a new incarnation")
	require.EqualValues(t, 1, second.Seq, "sequence numbers start over under the new incarnation")
	require.Equal(t, first.Origin, n.OriginDevice(second.Origin), "the device keeps its identity")
	require.Equal(t, n.DeviceID(), first.Origin, "the first incarnation is the device itself")
}

func TestSubscribeDeliversAndDropsWithoutBlocking(t *testing.T) {
	ctx := context.Background()
	n := newNode(t, memstore.New(), func(c *federation.Config) { c.Events.Buffer = 4 })
	all := n.Subscribe(federation.SubscribeOptions{})
	only := n.Subscribe(federation.SubscribeOptions{Collections: []string{"b"}})
	for i := range 10 {
		require.NoError(t, n.Put(ctx, "a", fmt.Sprint(i), nil)) // never blocks on the full buffer
	}
	require.NoError(t, n.Put(ctx, "b", "x", nil))
	for i := range 4 {
		e := <-all.C
		require.Equal(t, federation.EventChange, e.Kind)
		require.Equal(t, fmt.Sprint(i), e.Key)
		require.True(t, e.Local)
	}
	require.EqualValues(t, 7, all.Dropped())
	e := <-only.C
	require.Equal(t, "b", e.Collection)
	st, err := n.Stats(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 7, st.EventsDropped)
	require.Equal(t, 2, st.Subscribers)
	all.Close()
	all.Close()
	require.NoError(t, n.Close())
	_, open := <-only.C
	require.False(t, open, "closing the node ends subscriptions")
}

func TestCloseIsIdempotentAndRefusesUse(t *testing.T) {
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	require.NoError(t, n.Close())
	require.NoError(t, n.Close())
	require.ErrorIs(t, n.Put(ctx, "c", "k", nil), federation.ErrClosed)
	_, err = n.Get(ctx, "c", "k")
	require.ErrorIs(t, err, federation.ErrClosed)
}

func TestInvalidConfig(t *testing.T) {
	_, err := federation.New(federation.Config{})
	require.ErrorIs(t, err, federation.ErrInvalidConfig)
	_, err = federation.New(federation.Config{Dir: t.TempDir(), MaxClockDrift: -1})
	require.ErrorIs(t, err, federation.ErrInvalidConfig)
}
