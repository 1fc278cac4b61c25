package federationtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/federationtest"
)

// End-to-end conflict tests, one per data type of the design's table. Each
// builds a mesh of three devices, lets them share a starting state, cuts
// device 0 off from devices 1 and 2, writes the same record on devices 0
// and 1 (so the two versions are truly concurrent), heals, waits for the
// mesh to converge and then checks, on every device, the outcome a user
// would expect from that data type's resolver.

// dataMesh returns a connected three-device mesh.
func dataMesh(t *testing.T, n int) *federationtest.Mesh {
	t.Helper()
	// Analytics travel as written here (their default is periodic): these
	// tests are about the resolvers.
	m := federationtest.NewMesh(t, n, federationtest.Options{Seed: 1, Config: func(_ int, c *federation.Config) {
		p := federation.DefaultPolicies()[federation.CollectionAnalytics]
		p.Mode = federation.ModeImmediate
		c.Collections = map[string]federation.Policy{federation.CollectionAnalytics: p}
	}})
	stop := m.KeepConnected(5 * time.Millisecond)
	t.Cleanup(stop)
	return m
}

// converge waits until every device holds the same state.
func converge(t *testing.T, m *federationtest.Mesh) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, m.WaitConverged(ctx))
}

// edit rewrites (coll, key) on node i with fn applied to its current value
// (nil when absent), in one transaction, as a host's read-modify-write does.
func edit(t *testing.T, m *federationtest.Mesh, i int, coll, key string, fn func(old []byte) ([]byte, error)) {
	t.Helper()
	err := m.Node(i).Update(context.Background(), func(tx *federation.Tx) error {
		old, err := tx.Get(coll, key)
		if err != nil && !errors.Is(err, federation.ErrNotFound) {
			return err
		}
		v, err := fn(old)
		if err != nil {
			return err
		}
		return tx.Put(coll, key, v)
	})
	require.NoError(t, err, "node %d: edit %s/%s", i, coll, key)
}

// mergedEverywhere returns the value of (coll, key), after checking that
// every device holds the same value and that its causal context covers the
// writes of every device in writers (the concurrent versions were merged,
// not one of them silently dropped before it arrived).
func mergedEverywhere(t *testing.T, m *federationtest.Mesh, coll, key string, writers ...int) []byte {
	t.Helper()
	ctx := context.Background()
	var first []byte
	for i := range m.Len() {
		r, err := m.Node(i).GetRecord(ctx, coll, key)
		require.NoError(t, err, "node %d: %s/%s", i, coll, key)
		require.False(t, r.Deleted, "node %d: %s/%s deleted", i, coll, key)
		for _, w := range writers {
			require.NotZero(t, r.Context[m.Node(w).DeviceID()], "node %d: %s/%s lacks node %d's write", i, coll, key, w)
		}
		if i == 0 {
			first = r.Value
			continue
		}
		require.Equal(t, first, r.Value, "node %d holds another %s/%s than node 0", i, coll, key)
	}
	return first
}

// stamps returns n increasing hybrid-clock readings starting now.
func stamps(n int) []core.Timestamp {
	base := time.Now().UnixMilli()
	out := make([]core.Timestamp, n)
	for i := range out {
		out[i] = core.MakeTimestamp(base+int64(i), 0)
	}
	return out
}

func profileSet(field string, value any, ts core.Timestamp, dev core.DeviceID) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) { return conflict.ProfileSet(old, field, value, ts, dev) }
}

func profileFields(t *testing.T, v []byte) map[string]string {
	t.Helper()
	raw, err := conflict.ProfileFields(v)
	require.NoError(t, err)
	out := make(map[string]string, len(raw))
	for k, j := range raw {
		var s string
		require.NoError(t, json.Unmarshal(j, &s), "field %s", k)
		out[k] = s
	}
	return out
}

func TestProfileMergesPerField(t *testing.T) {
	m := dataMesh(t, 3)
	a, b := m.Node(0).DeviceID(), m.Node(1).DeviceID()
	ts := stamps(8)
	coll, key := federation.CollectionProfile, "me"
	edit(t, m, 0, coll, key, profileSet("name", "Ada", ts[0], a))
	edit(t, m, 0, coll, key, profileSet("city", "London", ts[0], a))
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	// Different fields on each device: both edits must survive.
	edit(t, m, 0, coll, key, profileSet("language", "fr", ts[1], a))
	edit(t, m, 1, coll, key, profileSet("name", "Ada L.", ts[1], b))
	// The same field on both: the later edit wins, whichever device made it.
	edit(t, m, 0, coll, key, profileSet("city", "Paris", ts[2], a))
	edit(t, m, 1, coll, key, profileSet("city", "Berlin", ts[3], b))
	edit(t, m, 1, coll, key, profileSet("mood", "curious", ts[4], b))
	edit(t, m, 0, coll, key, profileSet("mood", "calm", ts[5], a))
	m.Heal()
	converge(t, m)

	got := profileFields(t, mergedEverywhere(t, m, coll, key, 0, 1))
	require.Equal(t, map[string]string{"name": "Ada L.", "city": "Berlin", "language": "fr", "mood": "calm"}, got)
}

func message(id string, ts core.Timestamp, dev core.DeviceID, body string) crdt.Message {
	return crdt.Message{ID: id, Time: ts, Device: dev, Body: []byte(body)}
}

// logEdit applies fn to the decoded conversation log and re-encodes it.
func logEdit(fn func(l *crdt.Log) error) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		l, err := crdt.DecodeLog(old)
		if err != nil {
			return nil, err
		}
		if err := fn(l); err != nil {
			return nil, err
		}
		return l.Encode(), nil
	}
}

func appendMsgs(msgs ...crdt.Message) func([]byte) ([]byte, error) {
	return logEdit(func(l *crdt.Log) error {
		for _, msg := range msgs {
			if err := l.Append(msg); err != nil {
				return err
			}
		}
		return nil
	})
}

// transcript returns the log's messages as "id: body" lines in log order,
// and fails unless they are in chronological order with unique ids.
func transcript(t *testing.T, v []byte) []string {
	t.Helper()
	l, err := crdt.DecodeLog(v)
	require.NoError(t, err)
	seen := map[string]bool{}
	var out []string
	var prev core.Timestamp
	for _, msg := range l.Messages() {
		require.False(t, seen[msg.ID], "message %s twice", msg.ID)
		require.GreaterOrEqual(t, msg.Time, prev, "message %s out of order", msg.ID)
		seen[msg.ID], prev = true, msg.Time
		out = append(out, msg.ID+": "+string(msg.Body))
	}
	return out
}

func TestConversationMergesChronologically(t *testing.T) {
	m := dataMesh(t, 3)
	a, b := m.Node(0).DeviceID(), m.Node(1).DeviceID()
	ts := stamps(10)
	coll, key := federation.CollectionConversation, "chat-1"
	edit(t, m, 0, coll, key, appendMsgs(message("m1", ts[0], a, "hello"), message("m2", ts[1], a, "hi, how can I help?")))
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	// Interleaved turns on both devices; m5 reached both devices (the same
	// id and content), so it must appear once.
	edit(t, m, 0, coll, key, appendMsgs(message("m3", ts[2], a, "from the phone"), message("m6", ts[5], a, "phone again")))
	edit(t, m, 1, coll, key, appendMsgs(message("m4", ts[3], b, "from the laptop"), message("m5", ts[4], b, "shared reply")))
	edit(t, m, 0, coll, key, appendMsgs(message("m5", ts[4], b, "shared reply")))
	// m1 edited on both: the later edit (the laptop's) wins.
	edit(t, m, 0, coll, key, logEdit(func(l *crdt.Log) error { return l.Edit("m1", []byte("hello (phone edit)"), ts[6], a) }))
	edit(t, m, 1, coll, key, logEdit(func(l *crdt.Log) error { return l.Edit("m1", []byte("hello (laptop edit)"), ts[7], b) }))
	m.Heal()
	converge(t, m)

	got := transcript(t, mergedEverywhere(t, m, coll, key, 0, 1))
	require.Equal(t, []string{
		"m1: hello (laptop edit)",
		"m2: hi, how can I help?",
		"m3: from the phone",
		"m4: from the laptop",
		"m5: shared reply",
		"m6: phone again",
	}, got)
}

func averageAdd(dev core.DeviceID, sample []float64, weight float64) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		avg, err := crdt.DecodeAverage(old)
		if err != nil {
			return nil, err
		}
		if err := avg.Add(dev, sample, weight); err != nil {
			return nil, err
		}
		return avg.Encode(), nil
	}
}

func TestPersonalityIsWeightedAverage(t *testing.T) {
	m := dataMesh(t, 3)
	a, b := m.Node(0).DeviceID(), m.Node(1).DeviceID()
	coll, key := federation.CollectionPersonality, "traits"
	// Dimensions: warmth, formality.
	edit(t, m, 0, coll, key, averageAdd(a, []float64{1, 1}, 1))
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	edit(t, m, 0, coll, key, averageAdd(a, []float64{0.5, 0}, 2))
	edit(t, m, 1, coll, key, averageAdd(b, []float64{0, 1}, 1))
	m.Heal()
	converge(t, m)

	avg, err := crdt.DecodeAverage(mergedEverywhere(t, m, coll, key, 0, 1))
	require.NoError(t, err)
	mean, weight := avg.Value()
	// (1*[1,1] + 2*[0.5,0] + 1*[0,1]) / 4
	require.Equal(t, 4.0, weight)
	require.Len(t, mean, 2)
	require.InDelta(t, 0.5, mean[0], 1e-12)
	require.InDelta(t, 0.5, mean[1], 1e-12)
}

func embedding(t *testing.T, text string, vec []float32, ts core.Timestamp, dev core.DeviceID) func([]byte) ([]byte, error) {
	t.Helper()
	e := conflict.Embedding{Vector: vec, ContentHash: sha256.Sum256([]byte(text)), Model: "mini-embed", Time: ts, Device: dev}
	v, err := e.Encode()
	require.NoError(t, err)
	return func([]byte) ([]byte, error) { return v, nil }
}

func TestEmbeddingsDedupeAndMarkStale(t *testing.T) {
	m := dataMesh(t, 3)
	a, b := m.Node(0).DeviceID(), m.Node(1).DeviceID()
	ts := stamps(4)
	coll := federation.CollectionEmbeddings
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	// The same memory embedded on both devices.
	edit(t, m, 0, coll, "mem-same", embedding(t, "likes hiking", []float32{0.1, 0.9, 0.3}, ts[0], a))
	edit(t, m, 1, coll, "mem-same", embedding(t, "likes hiking", []float32{0.1, 0.9, 0.3}, ts[1], b))
	// Different contents for one memory: the later content wins, stale.
	edit(t, m, 0, coll, "mem-diff", embedding(t, "lives in London", []float32{1, 0, 0}, ts[2], a))
	edit(t, m, 1, coll, "mem-diff", embedding(t, "lives in Paris", []float32{0, 1, 0}, ts[3], b))
	m.Heal()
	converge(t, m)

	same := mergedEverywhere(t, m, coll, "mem-same", 0, 1)
	e, err := conflict.DecodeEmbedding(same)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256([]byte("likes hiking")), e.ContentHash)
	stale, err := conflict.NeedsReembed(same)
	require.NoError(t, err)
	require.False(t, stale, "a duplicate of the same content needs no re-embedding")

	diff := mergedEverywhere(t, m, coll, "mem-diff", 0, 1)
	e, err = conflict.DecodeEmbedding(diff)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256([]byte("lives in Paris")), e.ContentHash, "the later content wins")
	require.Equal(t, b, e.Device)
	stale, err = conflict.NeedsReembed(diff)
	require.NoError(t, err)
	require.True(t, stale, "diverged content must be re-embedded")
}

func eventsAppend(events ...string) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		bs := make([][]byte, len(events))
		for i, e := range events {
			bs[i] = []byte(e)
		}
		return conflict.EventsAppend(old, bs...)
	}
}

func TestAnalyticsUnion(t *testing.T) {
	m := dataMesh(t, 3)
	coll, key := federation.CollectionAnalytics, "2026-11-28"
	edit(t, m, 0, coll, key, eventsAppend("e0 app_open phone"))
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	edit(t, m, 0, coll, key, eventsAppend("e1 chat phone", "e2 voice phone"))
	edit(t, m, 1, coll, key, eventsAppend("e3 chat laptop", "e0 app_open phone"))
	m.Heal()
	converge(t, m)

	evs, err := conflict.Events(mergedEverywhere(t, m, coll, key, 0, 1))
	require.NoError(t, err)
	var got []string
	for _, e := range evs {
		got = append(got, string(e))
	}
	require.Equal(t, []string{"e0 app_open phone", "e1 chat phone", "e2 voice phone", "e3 chat laptop"}, got)
}

func TestMediaLastWriterWins(t *testing.T) {
	m := dataMesh(t, 3)
	coll, key := federation.CollectionMedia, "avatar.jpg"
	put := func(i int, v string) {
		edit(t, m, i, coll, key, func([]byte) ([]byte, error) { return []byte(v), nil })
	}
	put(0, "original photo")
	converge(t, m)

	m.Partition([]int{0}, []int{1, 2})
	put(0, "cropped on the phone")
	time.Sleep(5 * time.Millisecond) // a later hybrid-clock millisecond
	put(1, "filtered on the laptop")
	m.Heal()
	converge(t, m)

	got := mergedEverywhere(t, m, coll, key, 0, 1)
	require.Equal(t, "filtered on the laptop", string(got), "media is never merged: the later write wins whole")
	r, err := m.Node(2).GetRecord(context.Background(), coll, key)
	require.NoError(t, err)
	require.Equal(t, m.Node(1).DeviceID(), r.Origin)
}

func TestCacheNeverLeavesTheDevice(t *testing.T) {
	m := dataMesh(t, 3)
	ctx := context.Background()
	coll := federation.CollectionCache
	// Written while connected, and while partitioned on two devices.
	require.NoError(t, m.Node(0).Put(ctx, coll, "warm", []byte("phone only")))
	require.NoError(t, m.Node(0).Put(ctx, federation.CollectionProfile, "me", mustProfile(t, m)))
	converge(t, m)
	m.Partition([]int{0}, []int{1, 2})
	require.NoError(t, m.Node(0).Put(ctx, coll, "k", []byte("phone")))
	require.NoError(t, m.Node(1).Put(ctx, coll, "k", []byte("laptop")))
	m.Heal()
	converge(t, m)

	want := map[int]map[string]string{
		0: {"warm": "phone only", "k": "phone"},
		1: {"k": "laptop"},
		2: {},
	}
	for i := range m.Len() {
		got := map[string]string{}
		for _, k := range []string{"warm", "k"} {
			v, err := m.Node(i).Get(ctx, coll, k)
			if errors.Is(err, federation.ErrNotFound) {
				continue
			}
			require.NoError(t, err)
			got[k] = string(v)
		}
		require.Equal(t, want[i], got, "node %d's cache", i)
	}
	// The synced profile written alongside did travel.
	mergedEverywhere(t, m, federation.CollectionProfile, "me", 0)
}

func mustProfile(t *testing.T, m *federationtest.Mesh) []byte {
	t.Helper()
	v, err := conflict.ProfileSet(nil, "name", "Ada", stamps(1)[0], m.Node(0).DeviceID())
	require.NoError(t, err)
	return v
}

// TestThreeDevicesConcurrently has every device of a three-device mesh,
// each cut off from the others, write the same conversation and profile.
func TestThreeDevicesConcurrently(t *testing.T) {
	m := dataMesh(t, 3)
	devs := []core.DeviceID{m.Node(0).DeviceID(), m.Node(1).DeviceID(), m.Node(2).DeviceID()}
	ts := stamps(12)
	conv, prof := federation.CollectionConversation, federation.CollectionProfile
	edit(t, m, 0, conv, "chat", appendMsgs(message("start", ts[0], devs[0], "hello")))
	edit(t, m, 0, prof, "me", profileSet("name", "Ada", ts[0], devs[0]))
	converge(t, m)

	m.Partition([]int{0}, []int{1}, []int{2})
	for i, d := range devs {
		// Device i's turn sits at ts[1+i]; a message every device saw once.
		edit(t, m, i, conv, "chat", appendMsgs(
			message(fmt.Sprintf("turn-%d", i), ts[1+i], d, fmt.Sprintf("from device %d", i)),
			message("broadcast", ts[4], devs[2], "same everywhere")))
		edit(t, m, i, conv, "chat", logEdit(func(l *crdt.Log) error {
			return l.Edit("start", []byte(fmt.Sprintf("hello, edited on %d", i)), ts[5+i], d)
		}))
		edit(t, m, i, prof, "me", profileSet(fmt.Sprintf("device-%d", i), "seen", ts[1+i], d))
		// Device 1 edits the shared field last.
		edit(t, m, i, prof, "me", profileSet("status", fmt.Sprintf("set on %d", i), ts[8+(i+1)%3], d))
	}
	m.Heal()
	converge(t, m)

	got := transcript(t, mergedEverywhere(t, m, conv, "chat", 0, 1, 2))
	require.Equal(t, []string{
		"start: hello, edited on 2",
		"turn-0: from device 0",
		"turn-1: from device 1",
		"turn-2: from device 2",
		"broadcast: same everywhere",
	}, got)
	fields := profileFields(t, mergedEverywhere(t, m, prof, "me", 0, 1, 2))
	require.Equal(t, map[string]string{
		"name": "Ada", "device-0": "seen", "device-1": "seen", "device-2": "seen", "status": "set on 1",
	}, fields)
}
