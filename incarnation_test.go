package federation_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/memstore"
)

// reopen closes n and opens a node on a copy of its store (a restart).
func reopen(t *testing.T, n *federation.Node) *federation.Node {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, n.Backup(context.Background(), &b))
	require.NoError(t, n.Close())
	st, err := memstore.Restore(&b)
	require.NoError(t, err)
	return newNode(t, st)
}

// TestIncarnationPerOpenThatWrites: the open that creates a device writes
// under the device id; every later open that writes adds exactly one
// replica, whose sequence numbers start at 1; opens that only read add
// nothing; and every replica is reported as the device.
func TestIncarnationPerOpenThatWrites(t *testing.T) {
	ctx := context.Background()
	n := newNode(t, memstore.New())
	dev := n.DeviceID()
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("0")))
	vvLen := func() int {
		st, err := n.Stats(ctx)
		require.NoError(t, err)
		return len(st.VersionVector)
	}
	require.Equal(t, 1, vvLen())
	require.Equal(t, dev, n.Replica(), "the open that created the device writes under its id")
	for i := 1; i <= 3; i++ {
		n = reopen(t, n)
		_, err := n.Get(ctx, "notes", "k")
		require.NoError(t, err)
		n = reopen(t, n) // an open that only reads adds nothing
		require.Equal(t, i, vvLen())
		require.True(t, n.Replica().IsZero(), "no replica before the first write")
		events := n.Subscribe(federation.SubscribeOptions{})
		require.NoError(t, n.Put(ctx, "notes", "k", []byte(fmt.Sprint(i))))
		require.NoError(t, n.Put(ctx, "notes", "k2", []byte(fmt.Sprint(i))))
		require.Equal(t, i+1, vvLen(), "one more replica")
		r, err := n.GetRecord(ctx, "notes", "k")
		require.NoError(t, err)
		require.NotEqual(t, dev, r.Origin)
		require.Equal(t, dev, n.OriginDevice(r.Origin))
		require.EqualValues(t, 1, r.Seq, "a new incarnation counts from 1")
		require.Equal(t, r.Origin, n.Replica())
		e := <-events.C
		require.Equal(t, dev, e.Origin, "events name the device")
		events.Close()
	}
}

// TestIncarnationCost measures what one more incarnation costs in the
// formats that carry version vectors, and keeps it within the figures the
// package documentation states.
func TestIncarnationCost(t *testing.T) {
	const base, extra, changes = 3, 100, 2000
	ids := func(n int) []core.DeviceID {
		out := make([]core.DeviceID, n)
		for i := range out {
			out[i] = core.DeviceID(sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
		}
		return out
	}(base + extra)
	vv := func(n int) core.VersionVector {
		v := core.VersionVector{}
		for i, d := range ids[:n] {
			v[d] = uint64(1000 + 37*i) // counters of a few hundred to thousands
		}
		return v
	}
	perEntry := func(small, large int) float64 { return float64(large-small) / extra }

	hello := perEntry(len(wire.AppendVV(nil, vv(base))), len(wire.AppendVV(nil, vv(base+extra))))
	batch := func(n int) []core.Change {
		cs := make([]core.Change, changes)
		for i := range cs {
			ctx := vv(n)
			ctx[ids[0]] = uint64(5000 + i)
			cs[i] = core.Change{Record: core.Record{Collection: "notes", Key: fmt.Sprintf("k%05d", i), Value: []byte("v"),
				Timestamp: 1, Origin: ids[0], Seq: uint64(5000 + i), Context: ctx}, TxnFirst: uint64(5000 + i), TxnLen: 1}
		}
		return cs
	}
	frame := perEntry(len(wire.AppendChanges(nil, batch(base))), len(wire.AppendChanges(nil, batch(base+extra)))) / changes

	stored := func(n int) int {
		st, err := libsqlstore.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), libsqlstore.Options{})
		require.NoError(t, err)
		defer st.Close()
		b := core.Batch{Changes: batch(n), Advance: vv(n)}
		for i := range b.Changes {
			b.Changes[i].Seq, b.Changes[i].TxnFirst = uint64(i+1), uint64(i+1)
			b.Changes[i].Context[ids[0]] = uint64(i + 1)
			b.Records = append(b.Records, b.Changes[i].Record)
		}
		delete(b.Advance, ids[0])
		require.NoError(t, st.Commit(context.Background(), b))
		var buf bytes.Buffer
		require.NoError(t, st.Backup(context.Background(), &buf)) // compacted: no free pages
		return buf.Len()
	}
	disk := perEntry(stored(base), stored(base+extra)) / changes // a record and its changelog entry

	t.Logf("bytes per incarnation: SyncHello/CaughtUp %.1f; Changes frame %.2f per change (+32 per frame); libSQL %.2f per record (record + changelog entry)", hello, frame, disk)
	require.LessOrEqual(t, hello, 35.0)
	require.LessOrEqual(t, frame, 4.0)
	require.LessOrEqual(t, disk, 10.0)
}
