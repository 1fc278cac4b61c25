package conflict

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
)

func TestEmbeddingEncoding(t *testing.T) {
	e := Embedding{Vector: []float32{0.5, -1, 3}, ContentHash: hash("text"), Model: "mini-lm", Meta: []byte(`{"lang":"en"}`), Time: 99, Device: dev(2), Stale: true}
	b, err := e.Encode()
	require.NoError(t, err)
	assert.Equal(t, 75+1+7+1+13+1+12, len(b), "documented layout")
	got, err := DecodeEmbedding(b)
	require.NoError(t, err)
	assert.Equal(t, e, got)

	_, err = Embedding{Vector: []float32{float32(math.NaN())}}.Encode()
	assert.ErrorIs(t, err, ErrInvalidArgument)
	_, err = Embedding{Vector: make([]float32, MaxEmbeddingDim+1)}.Encode()
	assert.ErrorIs(t, err, ErrInvalidArgument)

	bad := func(mut func([]byte) []byte) []byte { return mut(append([]byte{}, b...)) }
	for name, in := range map[string][]byte{
		"empty":     nil,
		"short":     b[:70],
		"tag":       bad(func(x []byte) []byte { x[0] = 'X'; return x }),
		"version":   bad(func(x []byte) []byte { x[1] = 2; return x }),
		"flags":     bad(func(x []byte) []byte { x[2] = 8; return x }),
		"removed":   bad(func(x []byte) []byte { x[2] = 2; return x }),
		"truncated": b[:len(b)-1],
		"trailing":  append(bad(func(x []byte) []byte { return x }), 0),
		"nan":       bad(func(x []byte) []byte { copy(x[len(x)-4:], []byte{0x7f, 0xc0, 0, 0}); return x }),
		"model len": bad(func(x []byte) []byte { x[75] = 0xff; return x }),
	} {
		_, err := DecodeEmbedding(in)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

func decodeRes(t *testing.T, res core.Resolution) Embedding {
	t.Helper()
	e, err := DecodeEmbedding(res.Value)
	require.NoError(t, err)
	return e
}

func TestVectorMerge(t *testing.T) {
	same1 := Embedding{Vector: []float32{1, 0}, ContentHash: hash("a"), Model: "m"}
	same2 := Embedding{Vector: []float32{0.99, 0.01}, ContentHash: hash("a"), Model: "m"}
	other := Embedding{Vector: []float32{0, 1}, ContentHash: hash("b"), Model: "m"}

	// Same content: a duplicate, not stale; the stamps are filled from the
	// records and the later one is kept.
	res := resolve(t, VectorMerge{}, rec(mustEncode(same1), 5, 1), rec(mustEncode(same2), 6, 2))
	e := decodeRes(t, res)
	assert.False(t, e.Stale)
	assert.Equal(t, same2.Vector, e.Vector)
	assert.Equal(t, core.Timestamp(6), e.Time)
	assert.Equal(t, dev(2), e.Device)

	// Different content: the later content wins and is marked stale.
	res = resolve(t, VectorMerge{}, rec(mustEncode(other), 7, 1), rec(mustEncode(same2), 6, 2))
	e = decodeRes(t, res)
	assert.True(t, e.Stale)
	assert.Equal(t, hash("b"), e.ContentHash)
	stale, err := NeedsReembed(res.Value)
	require.NoError(t, err)
	assert.True(t, stale)

	// Content stamps in the value take precedence over record stamps.
	stamped := other
	stamped.Time, stamped.Device = 1, dev(0)
	res = resolve(t, VectorMerge{}, rec(mustEncode(stamped), 100, 1), rec(mustEncode(same2), 6, 2))
	assert.Equal(t, hash("a"), decodeRes(t, res).ContentHash)

	// Refresh clears the flag and keeps the content.
	fresh, err := Refresh(res.Value, []float32{0.6, 0.8})
	require.NoError(t, err)
	e = decodeRes(t, core.Resolution{Value: fresh})
	assert.False(t, e.Stale)
	assert.Equal(t, []float32{0.6, 0.8}, e.Vector)
	assert.Equal(t, hash("a"), e.ContentHash)

	res = resolve(t, VectorMerge{}, tomb(9, 1), rec(mustEncode(other), 7, 2))
	assert.Equal(t, hash("b"), decodeRes(t, res).ContentHash)
	res = resolve(t, VectorMerge{}, tomb(9, 1), tomb(7, 2))
	assert.True(t, res.Deleted)

	_, err = VectorMerge{}.Resolve(ctx, core.Conflict{Local: rec([]byte("junk"), 1, 1), Remote: rec(mustEncode(other), 1, 2)})
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestSimilarity(t *testing.T) {
	tests := []struct {
		name string
		a, b []float32
		want float64
	}{
		{"identical", []float32{1, 2, 3}, []float32{1, 2, 3}, 1},
		{"scaled", []float32{1, 2, 3}, []float32{2, 4, 6}, 1},
		{"orthogonal", []float32{1, 0}, []float32{0, 1}, 0},
		{"opposite", []float32{1, 1}, []float32{-1, -1}, -1},
		{"45 degrees", []float32{1, 0}, []float32{1, 1}, 1 / math.Sqrt2},
		{"length mismatch", []float32{1}, []float32{1, 0}, 0},
		{"zero vector", []float32{0, 0}, []float32{1, 0}, 0},
		{"empty", nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, Similarity(tt.a, tt.b), 1e-6)
			assert.InDelta(t, tt.want, Similarity(tt.b, tt.a), 1e-6)
		})
	}
	assert.True(t, NearDuplicate([]float32{1, 0.01}, []float32{1, 0}, 0.99))
	assert.False(t, NearDuplicate([]float32{1, 1}, []float32{1, 0}, 0.99))
	assert.False(t, NearDuplicate(nil, nil, -1))
}
