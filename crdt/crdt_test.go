package crdt

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLWW(t *testing.T) {
	tests := []struct {
		name string
		a, b LWW
		want string
	}{
		{"later time wins", LWW{[]byte("old"), 5, dev(9)}, LWW{[]byte("new"), 6, dev(1)}, "new"},
		{"device breaks time tie", LWW{[]byte("low"), 5, dev(1)}, LWW{[]byte("high"), 5, dev(2)}, "high"},
		{"bytes break full tie", LWW{[]byte("a"), 5, dev(1)}, LWW{[]byte("b"), 5, dev(1)}, "b"},
		{"anything beats empty", LWW{}, LWW{[]byte("x"), 1, dev(1)}, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ab, ba := tt.a.Clone(), tt.b.Clone()
			ab.Merge(&tt.b)
			ba.Merge(&tt.a)
			assert.Equal(t, tt.want, string(ab.Value))
			assert.Equal(t, ab.Encode(), ba.Encode())
		})
	}
	var r LWW
	r.Set([]byte("v2"), 10, dev(1))
	r.Set([]byte("stale"), 9, dev(3))
	assert.Equal(t, "v2", string(r.Value), "an older Set is ignored")
}

func TestORSetAddWins(t *testing.T) {
	a, b := NewORSet(), NewORSet()
	a.Add(dev(1), []byte("x"))
	b.Merge(a)
	// b removes x while a concurrently re-adds it: the add wins.
	b.Remove([]byte("x"))
	a.Add(dev(1), []byte("x"))
	a.Add(dev(1), []byte("y"))
	b.Merge(a)
	a.Merge(b)
	assert.True(t, b.Contains([]byte("x")))
	assert.Equal(t, [][]byte{[]byte("x"), []byte("y")}, b.Elements())
	assert.Equal(t, a.Encode(), b.Encode())
	// An observed remove sticks.
	b.Remove([]byte("y"))
	a.Merge(b)
	assert.False(t, a.Contains([]byte("y")))
	assert.Equal(t, 1, a.Len())
}

func TestMVRegister(t *testing.T) {
	a, b := NewMVRegister(), NewMVRegister()
	a.Set(dev(1), []byte("a"))
	b.Set(dev(2), []byte("b"))
	a.Merge(b)
	assert.Equal(t, [][]byte{[]byte("a"), []byte("b")}, a.Values(), "concurrent values are all kept")
	a.Set(dev(1), []byte("c"))
	b.Merge(a)
	assert.Equal(t, [][]byte{[]byte("c")}, b.Values(), "a later Set overwrites what it observed")
	assert.Empty(t, NewMVRegister().Values())
}

func TestCounters(t *testing.T) {
	g := NewGCounter()
	require.NoError(t, g.Inc(dev(1), 5))
	require.NoError(t, g.Inc(dev(2), 7))
	h := NewGCounter()
	require.NoError(t, h.Inc(dev(1), 3))
	g.Merge(h)
	assert.Equal(t, uint64(12), g.Value())
	assert.ErrorIs(t, g.Inc(dev(3), math.MaxUint64), ErrOverflow)
	assert.Equal(t, uint64(12), g.Value(), "failed Inc leaves the counter unchanged")

	p := NewPNCounter()
	require.NoError(t, p.Inc(dev(1), 10))
	require.NoError(t, p.Dec(dev(2), 25))
	assert.Equal(t, int64(-15), p.Value())
	big := NewPNCounter()
	require.NoError(t, big.Dec(dev(1), 1<<63))
	assert.Equal(t, int64(math.MinInt64), big.Value())
	require.NoError(t, big.Dec(dev(2), 5))
	assert.Equal(t, int64(math.MinInt64), big.Value(), "clamped")
}

func TestAverage(t *testing.T) {
	a := NewAverage(2)
	require.NoError(t, a.Add(dev(1), []float64{1, 0}, 1))
	require.NoError(t, a.Add(dev(1), []float64{3, 0}, 1)) // dev 1: sum (4,0) weight 2
	b := NewAverage(0)
	require.NoError(t, b.Add(dev(2), []float64{0, 6}, 2)) // dev 2: sum (0,12) weight 2
	require.NoError(t, a.Merge(b))
	v, w := a.Value()
	assert.Equal(t, []float64{1, 3}, v)
	assert.Equal(t, 4.0, w)
	assert.Equal(t, 2, b.Dim())

	// A stale contribution from dev 1 (lower version) does not win.
	old := NewAverage(2)
	require.NoError(t, old.Add(dev(1), []float64{100, 100}, 1))
	require.NoError(t, a.Merge(old))
	v, _ = a.Value()
	assert.Equal(t, []float64{1, 3}, v)

	require.NoError(t, a.Set(dev(2), []float64{2, 2}, 2))
	assert.Equal(t, Contribution{Version: 2, Weight: 2, Sum: []float64{2, 2}}, a.Contribution(dev(2)))

	for _, bad := range []struct {
		v []float64
		w float64
	}{{[]float64{1, 2}, 0}, {[]float64{1, 2}, -1}, {[]float64{1, 2}, math.Inf(1)}, {[]float64{math.NaN(), 0}, 1}, {[]float64{1}, 1}} {
		err := a.Add(dev(3), bad.v, bad.w)
		assert.Error(t, err, "%v %v", bad.v, bad.w)
	}
	assert.ErrorIs(t, a.Merge(averageWith(t, 3)), ErrDimension)
	assert.ErrorIs(t, a.Add(dev(3), []float64{math.MaxFloat64, 0}, math.MaxFloat64), ErrOverflow)
	empty, w := NewAverage(4).Value()
	assert.Nil(t, empty)
	assert.Zero(t, w)
}

func averageWith(t *testing.T, dim int) *Average {
	a := NewAverage(dim)
	v := make([]float64, dim)
	require.NoError(t, a.Add(dev(9), v, 1))
	return a
}

func TestLog(t *testing.T) {
	a, b := &Log{}, &Log{}
	require.NoError(t, a.Append(Message{ID: "a1", Time: 10, Device: dev(1), Body: []byte("hi")}))
	require.NoError(t, b.Append(Message{ID: "b1", Time: 10, Device: dev(2), Body: []byte("hey")}))
	require.NoError(t, b.Append(Message{ID: "b0", Time: 5, Device: dev(2), Body: []byte("first")}))
	require.NoError(t, a.Append(Message{ID: "a2", Time: 10, Device: dev(1), Body: []byte("same time, later id")}))
	ab, ba := a.Clone(), b.Clone()
	ab.Merge(b)
	ba.Merge(a)
	var ids []string
	for _, m := range ab.Messages() {
		ids = append(ids, m.ID)
	}
	assert.Equal(t, []string{"b0", "a1", "a2", "b1"}, ids, "ordered by time, then device, then id")
	assert.Equal(t, ab.Encode(), ba.Encode())

	// Concurrent edits of one message: the later edit wins everywhere.
	require.NoError(t, ab.Edit("b1", []byte("edit@20"), 20, dev(1)))
	require.NoError(t, ba.Edit("b1", []byte("edit@30"), 30, dev(2)))
	ab.Merge(ba)
	ba.Merge(ab)
	m, ok := ab.Get("b1")
	require.True(t, ok)
	assert.Equal(t, "edit@30", string(m.Body))
	assert.Equal(t, ab.Encode(), ba.Encode())

	require.NoError(t, ab.Delete("a1", 40, dev(2)))
	ba.Merge(ab)
	m, _ = ba.Get("a1")
	assert.True(t, m.Deleted)
	assert.Empty(t, m.Body)
	assert.Equal(t, 4, ba.Len(), "deleted messages keep their place as tombstones")

	assert.ErrorIs(t, ab.Edit("nope", nil, 50, dev(1)), ErrUnknownMessage)
	assert.ErrorIs(t, ab.Edit("a2", nil, 0, dev(1)), ErrInvalidArgument)
	assert.ErrorIs(t, ab.Append(Message{Time: 1}), ErrInvalidArgument)

	// Duplicate id at a different place (a misbehaving device): the
	// last-writer-wins version survives, once.
	x := &Log{}
	require.NoError(t, x.Append(Message{ID: "d", Time: 1, Device: dev(1), Body: []byte("x")}))
	y := &Log{}
	require.NoError(t, y.Append(Message{ID: "d", Time: 2, Device: dev(1), Body: []byte("y")}))
	xy, yx := x.Clone(), y.Clone()
	xy.Merge(y)
	yx.Merge(x)
	assert.Equal(t, 1, xy.Len())
	assert.Equal(t, xy.Encode(), yx.Encode())
}

func TestDecodeRejects(t *testing.T) {
	l := &Log{}
	require.NoError(t, l.Append(Message{ID: "m", Time: 1, Device: dev(1), Body: []byte("b")}))
	good := l.Encode()
	tests := []struct {
		name string
		in   []byte
	}{
		{"one byte", []byte{tagLog}},
		{"wrong tag", append([]byte{tagGSet}, good[1:]...)},
		{"wrong version", append([]byte{tagLog, 9}, good[2:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"huge count", []byte{tagLog, formatVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"non-minimal varint", []byte{tagLog, formatVersion, 0x80, 0x00, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeLog(tt.in)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
	// Non-canonical inputs that would decode to a valid state are refused
	// too, so that decode success implies byte-identical re-encoding.
	g := &GSet{}
	g.Add([]byte("a"))
	g.Add([]byte("b"))
	enc := g.Encode()
	swapped := []byte{tagGSet, formatVersion, 2, 1, 'b', 1, 'a'}
	_, err := DecodeGSet(swapped)
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = DecodeGSet(enc)
	assert.NoError(t, err)
	huge := NewORSet()
	huge.Add(dev(1), []byte("x"))
	huge.k.ctx[dev(1)] = maxDotCounter + 1
	huge.k.entries[0].dot.Counter = maxDotCounter + 1
	_, err = DecodeORSet(huge.Encode())
	assert.ErrorIs(t, err, ErrMalformed, "counter that could wrap")
	_, err = DecodeGCounter([]byte{tagGCounter, formatVersion, 1})
	assert.True(t, errors.Is(err, ErrMalformed))
}

func TestEmptyDecodes(t *testing.T) {
	_, err := DecodeLWW(nil)
	require.NoError(t, err)
	s, err := DecodeORSet(nil)
	require.NoError(t, err)
	assert.Zero(t, s.Len())
	r, err := DecodeMVRegister(nil)
	require.NoError(t, err)
	assert.Empty(t, r.Values())
	g, err := DecodeGCounter(nil)
	require.NoError(t, err)
	assert.Zero(t, g.Value())
	p, err := DecodePNCounter(nil)
	require.NoError(t, err)
	assert.Zero(t, p.Value())
	a, err := DecodeAverage(nil)
	require.NoError(t, err)
	assert.Zero(t, a.Dim())
	l, err := DecodeLog(nil)
	require.NoError(t, err)
	assert.Zero(t, l.Len())
	gs, err := DecodeGSet(nil)
	require.NoError(t, err)
	assert.Zero(t, gs.Len())
}

// TestGSetRemovals checks the two-phase removal of GSet: a removed element
// stays removed through merges in both orders and cannot be added again,
// and the encoding round-trips (version 1 without removals, 2 with).
func TestGSetRemovals(t *testing.T) {
	a, b := &GSet{}, &GSet{}
	a.Add([]byte("x"))
	b.Add([]byte("y"))
	d := a.Clone()
	d.RemoveAll()
	require.Equal(t, byte(1), a.Encode()[1])
	require.Equal(t, byte(2), d.Encode()[1])
	ab := a.Clone()
	ab.Merge(b)
	ab.Merge(d)
	db := d.Clone()
	db.Merge(b)
	require.Equal(t, ab.Encode(), db.Encode())
	require.Equal(t, [][]byte{[]byte("y")}, db.Elements())
	db.Add([]byte("x"))
	require.False(t, db.Contains([]byte("x")), "a removed element cannot come back")
	got, err := DecodeGSet(db.Encode())
	require.NoError(t, err)
	require.Equal(t, db.Encode(), got.Encode())
	require.Equal(t, [][]byte{[]byte("x")}, got.Removed())
	// An element both present and removed, or an empty removed list, is
	// not canonical.
	bad := []byte{tagGSet, 2, 1, 1, 'x', 1, 1, 'x'}
	_, err = DecodeGSet(bad)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = DecodeGSet([]byte{tagGSet, 2, 0, 0})
	require.ErrorIs(t, err, ErrMalformed)
}
