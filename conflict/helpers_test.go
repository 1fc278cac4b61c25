package conflict

import (
	"context"
	"crypto/sha256"
	"fmt"

	"pgregory.net/rapid"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
)

var ctx = context.Background()

func dev(i int) core.DeviceID {
	var d core.DeviceID
	d[0] = byte(i)
	d[31] = byte(3 * i)
	return d
}

func rec(value []byte, ts core.Timestamp, origin int) core.Record {
	return core.Record{Collection: "c", Key: "k", Value: value, Timestamp: ts, Origin: dev(origin), Seq: uint64(ts)}
}

func tomb(ts core.Timestamp, origin int) core.Record {
	r := rec(nil, ts, origin)
	r.Deleted = true
	return r
}

func hash(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func mustEncode(e Embedding) []byte {
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

// strategy describes a resolver to the property tests: how a host writes a
// new value on top of an old one.
type strategy struct {
	name string
	r    core.Resolver
	// op returns a host write made on top of old by node at time ts.
	op func(t *rapid.T, old []byte, node int, ts core.Timestamp) []byte
	// join marks CRDT-backed strategies, whose outcome must be
	// independent of delivery order.
	join bool
}

func opaqueOp(t *rapid.T, _ []byte, _ int, _ core.Timestamp) []byte {
	return rapid.SliceOfN(rapid.ByteRange('a', 'c'), 0, 3).Draw(t, "bytes")
}

func profileOp(t *rapid.T, old []byte, node int, ts core.Timestamp) []byte {
	field := rapid.SampledFrom([]string{"name", "age", "city"}).Draw(t, "field")
	var out []byte
	var err error
	if rapid.IntRange(0, 4).Draw(t, "del") == 0 {
		out, err = ProfileDelete(old, field, ts, dev(node))
	} else {
		out, err = ProfileSet(old, field, rapid.IntRange(0, 3).Draw(t, "v"), ts, dev(node))
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var msgSeq int

func logOp(t *rapid.T, old []byte, node int, ts core.Timestamp) []byte {
	l, err := crdt.DecodeLog(old)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := l.Messages(); len(msgs) > 0 && rapid.IntRange(0, 3).Draw(t, "edit") == 0 {
		id := msgs[rapid.IntRange(0, len(msgs)-1).Draw(t, "which")].ID
		if err := l.Edit(id, []byte(fmt.Sprint("edit", node)), ts, dev(node)); err != nil {
			t.Fatal(err)
		}
		return l.Encode()
	}
	msgSeq++
	m := crdt.Message{ID: fmt.Sprintf("n%d-%d", node, msgSeq), Time: ts, Device: dev(node), Body: []byte("hi")}
	if err := l.Append(m); err != nil {
		t.Fatal(err)
	}
	return l.Encode()
}

func averageOp(t *rapid.T, old []byte, node int, _ core.Timestamp) []byte {
	a, err := crdt.DecodeAverage(old)
	if err != nil {
		t.Fatal(err)
	}
	v := rapid.SliceOfN(rapid.Float64Range(-1, 1), 3, 3).Draw(t, "trait")
	if err := a.Add(dev(node), v, rapid.Float64Range(0.1, 2).Draw(t, "w")); err != nil {
		t.Fatal(err)
	}
	return a.Encode()
}

func vectorOp(t *rapid.T, _ []byte, _ int, ts core.Timestamp) []byte {
	e := Embedding{
		Vector:      rapid.SliceOfN(rapid.Float32Range(-1, 1), 2, 2).Draw(t, "vec"),
		ContentHash: hash(rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "content")),
		Model:       "m1",
		Stale:       rapid.IntRange(0, 4).Draw(t, "stale") == 0,
	}
	if rapid.Bool().Draw(t, "stamped") {
		e.Time, e.Device = ts, dev(rapid.IntRange(0, 2).Draw(t, "dev"))
	}
	return mustEncode(e)
}

func unionOp(t *rapid.T, old []byte, _ int, _ core.Timestamp) []byte {
	out, err := EventsAppend(old, []byte(rapid.SampledFrom([]string{"open", "close", "tap", "swipe"}).Draw(t, "event")))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func strategies() []strategy {
	return []strategy{
		{name: "LWW", r: LWW{}, op: opaqueOp},
		{name: "Manual", r: Manual{}, op: opaqueOp},
		{name: "FieldMerge", r: FieldMerge{}, op: profileOp, join: true},
		{name: "Chronological", r: Chronological{}, op: logOp, join: true},
		{name: "WeightedAverage", r: WeightedAverage{}, op: averageOp, join: true},
		{name: "VectorMerge", r: VectorMerge{}, op: vectorOp, join: true},
		{name: "Union", r: Union{}, op: unionOp, join: true},
		{name: "Registry", r: NewRegistry(), op: opaqueOp},
	}
}
