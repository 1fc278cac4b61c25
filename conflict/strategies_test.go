package conflict

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
)

func resolve(t *testing.T, r core.Resolver, l, rm core.Record) core.Resolution {
	t.Helper()
	res, err := r.Resolve(ctx, core.Conflict{Collection: "c", Key: "k", Local: l, Remote: rm})
	require.NoError(t, err)
	return res
}

func TestLWW(t *testing.T) {
	tests := []struct {
		name       string
		local, rem core.Record
		want       core.Resolution
		loser      Side
	}{
		{"remote later", rec([]byte("old"), 5, 9), rec([]byte("new"), 6, 1), core.Resolution{Value: []byte("new")}, Local},
		{"local later", rec([]byte("new"), 7, 1), rec([]byte("old"), 6, 9), core.Resolution{Value: []byte("new")}, Remote},
		{"origin breaks tie", rec([]byte("low"), 5, 1), rec([]byte("high"), 5, 2), core.Resolution{Value: []byte("high")}, Local},
		{"later delete wins", rec([]byte("x"), 5, 1), tomb(6, 1), core.Resolution{Deleted: true}, Local},
		{"later write beats delete", tomb(5, 2), rec([]byte("x"), 6, 1), core.Resolution{Value: []byte("x")}, Local},
		{"empty value stays live", rec([]byte{}, 9, 1), rec([]byte("x"), 1, 1), core.Resolution{Value: []byte{}}, Remote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(t, LWW{}, tt.local, tt.rem)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.loser, LWW{}.Loser(core.Conflict{Local: tt.local, Remote: tt.rem}))
			assert.Equal(t, 1-tt.loser, LWW{}.Loser(core.Conflict{Local: tt.rem, Remote: tt.local}), "swapped sides")
			assert.Equal(t, got, resolve(t, LWW{}, tt.rem, tt.local))
		})
	}
	v := []byte("shared")
	res := resolve(t, LWW{}, rec(v, 2, 1), rec([]byte("a"), 1, 1))
	res.Value[0] = 'X'
	assert.Equal(t, "shared", string(v), "the resolution does not alias the input")
	assert.Equal(t, "local", Local.String())
	assert.Equal(t, "remote", Remote.String())
}

func TestManual(t *testing.T) {
	res := resolve(t, Manual{}, rec([]byte("a"), 1, 1), rec([]byte("b"), 2, 2))
	assert.Equal(t, core.Resolution{Manual: true}, res)
}

func buildProfile(t *testing.T, sets ...func([]byte) ([]byte, error)) []byte {
	t.Helper()
	var v []byte
	for _, s := range sets {
		var err error
		v, err = s(v)
		require.NoError(t, err)
	}
	return v
}

func set(field string, value any, ts core.Timestamp, d int) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) { return ProfileSet(old, field, value, ts, dev(d)) }
}

func del(field string, ts core.Timestamp, d int) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) { return ProfileDelete(old, field, ts, dev(d)) }
}

func TestFieldMerge(t *testing.T) {
	base := buildProfile(t, set("name", "Ada", 1, 0), set("city", "Paris", 1, 0), set("age", 36, 1, 0))
	tests := []struct {
		name       string
		local, rem []func([]byte) ([]byte, error)
		want       map[string]string
	}{
		{"different fields both kept",
			[]func([]byte) ([]byte, error){set("name", "Ada L.", 5, 1)},
			[]func([]byte) ([]byte, error){set("city", "London", 6, 2)},
			map[string]string{"name": `"Ada L."`, "city": `"London"`, "age": "36"}},
		{"same field later wins",
			[]func([]byte) ([]byte, error){set("city", "Rome", 7, 1)},
			[]func([]byte) ([]byte, error){set("city", "London", 6, 2)},
			map[string]string{"name": `"Ada"`, "city": `"Rome"`, "age": "36"}},
		{"same time: higher device wins",
			[]func([]byte) ([]byte, error){set("city", "Rome", 6, 1)},
			[]func([]byte) ([]byte, error){set("city", "London", 6, 2)},
			map[string]string{"name": `"Ada"`, "city": `"London"`, "age": "36"}},
		{"later field delete wins",
			[]func([]byte) ([]byte, error){del("age", 8, 1)},
			[]func([]byte) ([]byte, error){set("age", 37, 6, 2)},
			map[string]string{"name": `"Ada"`, "city": `"Paris"`}},
		{"later set beats older delete, new field added",
			[]func([]byte) ([]byte, error){del("age", 4, 1)},
			[]func([]byte) ([]byte, error){set("age", 37, 6, 2), set("pets", []string{"cat"}, 6, 2)},
			map[string]string{"name": `"Ada"`, "city": `"Paris"`, "age": "37", "pets": `["cat"]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := buildProfile(t, append([]func([]byte) ([]byte, error){func([]byte) ([]byte, error) { return base, nil }}, tt.local...)...)
			r := buildProfile(t, append([]func([]byte) ([]byte, error){func([]byte) ([]byte, error) { return base, nil }}, tt.rem...)...)
			res := resolve(t, FieldMerge{}, rec(l, 10, 1), rec(r, 11, 2))
			assert.Equal(t, res, resolve(t, FieldMerge{}, rec(r, 11, 2), rec(l, 10, 1)))
			fields, err := ProfileFields(res.Value)
			require.NoError(t, err)
			got := map[string]string{}
			for k, v := range fields {
				got[k] = string(v)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestProfileHelpers(t *testing.T) {
	v := buildProfile(t, set("name", "Ada <&>", 5, 1), set("nick", nil, 5, 1))
	assert.JSONEq(t, `{"name":{"v":"Ada <&>","t":"5","d":"`+hexDev(1)+`"},"nick":{"v":null,"t":"5","d":"`+hexDev(1)+`"}}`, string(v))
	got, ok, err := ProfileGet(v, "name")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, `"Ada <&>"`, string(got))
	got, ok, err = ProfileGet(v, "nick")
	require.NoError(t, err)
	assert.True(t, ok, "a null value is a present field")
	assert.Equal(t, "null", string(got))

	older, err := ProfileSet(v, "name", "stale", 4, dev(9))
	require.NoError(t, err)
	got, _, _ = ProfileGet(older, "name")
	assert.Equal(t, `"Ada <&>"`, string(got), "an older write is ignored")

	gone, err := ProfileDelete(v, "name", 6, dev(1))
	require.NoError(t, err)
	_, ok, err = ProfileGet(gone, "name")
	require.NoError(t, err)
	assert.False(t, ok)
	_, ok, err = ProfileGet(nil, "name")
	require.NoError(t, err)
	assert.False(t, ok)

	_, err = ProfileSet(nil, "", 1, 1, dev(1))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = ProfileSet(nil, "f", func() {}, 1, dev(1))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = ProfileSet(nil, "bad\xff", 1, 1, dev(1))
	assert.ErrorIs(t, err, ErrInvalidArgument)
}

func hexDev(i int) string {
	d := dev(i)
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 64)
	for _, x := range d {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return string(out)
}

func TestProfileMalformed(t *testing.T) {
	d := `"` + hexDev(1) + `"`
	for _, in := range []string{
		`not json`,
		`[]`,
		`null`,
		`{"f":null}`,
		`{"f":{"v":1,"t":"5"}}`,
		`{"f":{"v":1,"t":5,"d":` + d + `}}`,
		`{"f":{"v":1,"t":"05","d":` + d + `}}`,
		`{"f":{"v":1,"t":"-1","d":` + d + `}}`,
		`{"f":{"v":1,"t":"5","d":"abc"}}`,
		`{"f":{"v":1,"t":"5","d":"` + strings.ToUpper(hexDev(5)) + `"}}`,
		`{"f":{"t":"5","d":` + d + `}}`,
		`{"f":{"v":1,"t":"5","d":` + d + `,"del":true}}`,
		`{"f":{"v":1,"t":"5","d":` + d + `,"x":1}}`,
		`{"":{"v":1,"t":"5","d":` + d + `}}`,
		`{"f":{"v":1,"t":"5","d":` + d + `}} {}`,
	} {
		_, err := ProfileMerge([]byte(in), nil)
		assert.ErrorIs(t, err, ErrMalformed, in)
		_, err = FieldMerge{}.Resolve(ctx, core.Conflict{Local: rec([]byte(in), 1, 1), Remote: rec(nil, 2, 2)})
		assert.ErrorIs(t, err, ErrMalformed, in)
	}
	ok := `{"f":{"v": [1, 2],"t":"5","d":` + d + `}}`
	out, err := ProfileMerge([]byte(ok), nil)
	require.NoError(t, err)
	assert.Equal(t, `{"f":{"v":[1,2],"t":"5","d":`+d+`}}`, string(out), "canonical compact output")
}

func TestChronological(t *testing.T) {
	var base crdt.Log
	require.NoError(t, base.Append(crdt.Message{ID: "m1", Time: 10, Device: dev(1), Body: []byte("hello")}))
	phone, laptop := base.Clone(), base.Clone()
	require.NoError(t, phone.Append(crdt.Message{ID: "p1", Time: 20, Device: dev(1), Body: []byte("from phone")}))
	require.NoError(t, laptop.Append(crdt.Message{ID: "l1", Time: 15, Device: dev(2), Body: []byte("from laptop")}))
	require.NoError(t, laptop.Edit("m1", []byte("hello!"), 16, dev(2)))
	res := resolve(t, Chronological{}, rec(phone.Encode(), 20, 1), rec(laptop.Encode(), 16, 2))
	merged, err := crdt.DecodeLog(res.Value)
	require.NoError(t, err)
	var got []string
	for _, m := range merged.Messages() {
		got = append(got, m.ID+"="+string(m.Body))
	}
	assert.Equal(t, []string{"m1=hello!", "l1=from laptop", "p1=from phone"}, got)

	// A deletion concurrent with new messages: the messages survive.
	res = resolve(t, Chronological{}, tomb(30, 1), rec(laptop.Encode(), 16, 2))
	assert.False(t, res.Deleted)
	assert.Equal(t, laptop.Encode(), res.Value)
	res = resolve(t, Chronological{}, tomb(30, 1), tomb(31, 2))
	assert.True(t, res.Deleted)

	_, err = Chronological{}.Resolve(ctx, core.Conflict{Local: rec([]byte{7, 1, 9}, 1, 1), Remote: rec(nil, 1, 2)})
	assert.ErrorIs(t, err, ErrMalformed)
	assert.ErrorIs(t, err, crdt.ErrMalformed)
}

func TestWeightedAverage(t *testing.T) {
	a, b := crdt.NewAverage(2), crdt.NewAverage(2)
	require.NoError(t, a.Add(dev(1), []float64{1, 0}, 1))
	require.NoError(t, b.Add(dev(2), []float64{0, 1}, 3))
	res := resolve(t, WeightedAverage{}, rec(a.Encode(), 1, 1), rec(b.Encode(), 2, 2))
	m, err := crdt.DecodeAverage(res.Value)
	require.NoError(t, err)
	v, w := m.Value()
	assert.Equal(t, []float64{0.25, 0.75}, v)
	assert.Equal(t, 4.0, w)

	c := crdt.NewAverage(3)
	require.NoError(t, c.Add(dev(3), []float64{1, 1, 1}, 1))
	_, err = WeightedAverage{}.Resolve(ctx, core.Conflict{Local: rec(a.Encode(), 1, 1), Remote: rec(c.Encode(), 1, 3)})
	assert.ErrorIs(t, err, ErrIncompatible)
	assert.ErrorIs(t, err, crdt.ErrDimension)
}

func TestUnion(t *testing.T) {
	a, err := EventsAppend(nil, []byte("open"), []byte("tap"))
	require.NoError(t, err)
	b, err := EventsAppend(nil, []byte("tap"), []byte("close"))
	require.NoError(t, err)
	res := resolve(t, Union{}, rec(a, 1, 1), rec(b, 2, 2))
	evs, err := Events(res.Value)
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte("close"), []byte("open"), []byte("tap")}, evs)
	_, err = Events([]byte{8, 1, 5})
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = EventsAppend([]byte{1}, []byte("x"))
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestDefaultAndRegistry(t *testing.T) {
	want := map[string]core.Resolver{
		core.CollectionProfile:      FieldMerge{},
		core.CollectionConversation: Chronological{},
		core.CollectionPersonality:  WeightedAverage{},
		core.CollectionEmbeddings:   VectorMerge{},
		core.CollectionAnalytics:    Union{},
		core.CollectionMedia:        LWW{},
		core.CollectionCache:        LWW{},
		"host-notes":                LWW{},
	}
	g := NewRegistry()
	for coll, r := range want {
		assert.Equal(t, r, Default(coll), coll)
		assert.Equal(t, r, g.Resolver(coll), coll)
	}
	require.NoError(t, g.Register(core.CollectionMedia, Manual{}))
	require.NoError(t, g.Register("host-notes", FieldMerge{}))
	assert.Equal(t, Manual{}, g.Resolver(core.CollectionMedia))
	assert.Equal(t, []string{"host-notes", core.CollectionMedia}, g.Registered())
	res, err := g.Resolve(ctx, core.Conflict{Collection: core.CollectionMedia, Local: rec([]byte("a"), 1, 1), Remote: rec([]byte("b"), 2, 2)})
	require.NoError(t, err)
	assert.True(t, res.Manual, "dispatches on the conflict's collection")
	g.Unregister(core.CollectionMedia)
	assert.Equal(t, LWW{}, g.Resolver(core.CollectionMedia))

	assert.ErrorIs(t, g.Register("", LWW{}), ErrInvalidArgument)
	assert.ErrorIs(t, g.Register("x", nil), ErrInvalidArgument)

	for _, name := range []string{StrategyLWW, StrategyFieldMerge, StrategyChronological, StrategyAverage, StrategyVector, StrategyUnion, StrategyManual} {
		r, err := ByName(name)
		require.NoError(t, err, name)
		assert.NotNil(t, r)
	}
	_, err = ByName("magic")
	assert.True(t, errors.Is(err, ErrUnknownStrategy))
}
