package conflict

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/varint"
)

// Limits on embedding values.
const (
	// MaxEmbeddingDim bounds the vector length.
	MaxEmbeddingDim = 1 << 16
	// MaxModelName bounds the model identifier in bytes.
	MaxModelName = 256
)

// Embedding is the value of a record in the embeddings collection: a vector
// together with what it embeds.
//
// Encoding (Encode, DecodeEmbedding): byte 0x45 ('E'), format version
// 0x01, a flags byte (bit 0: Stale; other bits zero), Time as 8 bytes
// big-endian, Device as 32 bytes, ContentHash as 32 bytes, Model and Meta
// each as a uvarint length plus bytes, the dimension as a uvarint, then
// each component as an IEEE 754 float32, 4 bytes big-endian. Components
// must be finite; varints minimal; nothing may follow.
type Embedding struct {
	// Vector is the embedding.
	Vector []float32
	// ContentHash identifies the embedded content (the host's choice of
	// hash, typically SHA-256 of the text). Equal hashes mean equal content.
	ContentHash [32]byte
	// Model names the embedding model that produced Vector.
	Model string
	// Meta is opaque host metadata that travels with the vector.
	Meta []byte
	// Time and Device stamp the content: when and where it was written.
	// Hosts may leave them zero; the first resolution then fills them from
	// the record that carried the value, so that later merges depend on the
	// value alone.
	Time   core.Timestamp
	Device core.DeviceID
	// Stale marks a vector that no longer reliably matches the content
	// after a merge of different contents; the host should re-embed.
	Stale bool
}

const (
	embeddingTag     = 'E'
	embeddingVersion = 1
	flagStale        = 1
	embeddingFixed   = 3 + 8 + 32 + 32
)

// Encode returns the canonical encoding. It fails with ErrInvalidArgument
// for a non-finite component or a limit exceeded.
func (e Embedding) Encode() ([]byte, error) {
	if len(e.Vector) > MaxEmbeddingDim || len(e.Model) > MaxModelName {
		return nil, fmt.Errorf("encode embedding: %w: dimension %d or model name %d bytes over limit", ErrInvalidArgument, len(e.Vector), len(e.Model))
	}
	for _, x := range e.Vector {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("encode embedding: %w: non-finite component", ErrInvalidArgument)
		}
	}
	b := make([]byte, 0, embeddingFixed+len(e.Model)+len(e.Meta)+12+4*len(e.Vector))
	var flags byte
	if e.Stale {
		flags |= flagStale
	}
	b = append(b, embeddingTag, embeddingVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = append(b, e.Device[:]...)
	b = append(b, e.ContentHash[:]...)
	b = binary.AppendUvarint(b, uint64(len(e.Model)))
	b = append(b, e.Model...)
	b = binary.AppendUvarint(b, uint64(len(e.Meta)))
	b = append(b, e.Meta...)
	b = binary.AppendUvarint(b, uint64(len(e.Vector)))
	for _, x := range e.Vector {
		b = binary.BigEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b, nil
}

// DecodeEmbedding decodes an embedding value. It accepts only canonical
// encodings, so a successful decode re-encodes to the same bytes.
func DecodeEmbedding(b []byte) (Embedding, error) {
	var e Embedding
	fail := func(msg string) (Embedding, error) {
		return Embedding{}, fmt.Errorf("decode embedding: %w: %s", ErrMalformed, msg)
	}
	if len(b) < embeddingFixed {
		return fail("truncated header")
	}
	if b[0] != embeddingTag || b[1] != embeddingVersion {
		return fail("unknown tag or version")
	}
	if b[2]&^flagStale != 0 {
		return fail("unknown flags")
	}
	e.Stale = b[2]&flagStale != 0
	e.Time = core.Timestamp(binary.BigEndian.Uint64(b[3:]))
	copy(e.Device[:], b[11:43])
	copy(e.ContentHash[:], b[43:75])
	rest := b[embeddingFixed:]
	field := func(limit int) ([]byte, bool) {
		n, k := varint.Uvarint(rest)
		if k <= 0 || n > uint64(limit) || n > uint64(len(rest)-k) {
			return nil, false
		}
		p := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return p, true
	}
	model, ok := field(MaxModelName)
	if !ok {
		return fail("bad model")
	}
	meta, ok := field(len(rest))
	if !ok {
		return fail("bad meta")
	}
	e.Model = string(model)
	if len(meta) > 0 {
		e.Meta = slices.Clone(meta)
	}
	n, k := varint.Uvarint(rest)
	if k <= 0 || n > MaxEmbeddingDim || n*4 != uint64(len(rest)-k) {
		return fail("bad dimension or trailing bytes")
	}
	rest = rest[k:]
	e.Vector = make([]float32, n)
	for i := range e.Vector {
		x := math.Float32frombits(binary.BigEndian.Uint32(rest[4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fail("non-finite component")
		}
		e.Vector[i] = x
	}
	return e, nil
}

// VectorMerge resolves embeddings (values are Embedding encodings):
//
//   - the same content (equal ContentHash) on both sides is a duplicate:
//     the result is one of them, picked deterministically;
//   - different contents for the same key keep the winning content, the
//     one with the later (Time, Device), then the greater hash, and mark it
//     Stale so the host re-embeds (see ReembedFunc).
//
// In both cases the pick is the greater of the two by (Time, Device,
// ContentHash, encoding), and Stale is set if either side was stale or the
// hashes differ: a per-key maximum plus a sticky flag, so the outcome is
// symmetric and convergent. A stale flag is cleared only by a new local
// write of the refreshed vector (Refresh), which supersedes the merged
// version causally instead of conflicting with it.
type VectorMerge struct{}

var _ core.Resolver = VectorMerge{}

// Resolve merges the two embeddings; see resolveJoin for tombstones.
func (VectorMerge) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	a, b := c.Local, c.Remote
	switch {
	case a.Deleted && b.Deleted:
		return core.Resolution{Deleted: true}, nil
	case a.Deleted:
		a = b
	case b.Deleted:
		b = a
	}
	ea, err := stampedEmbedding(a)
	if err != nil {
		return core.Resolution{}, fmt.Errorf("vector merge of %s/%q: %w", c.Collection, c.Key, err)
	}
	eb, err := stampedEmbedding(b)
	if err != nil {
		return core.Resolution{}, fmt.Errorf("vector merge of %s/%q: %w", c.Collection, c.Key, err)
	}
	v, err := mergeEmbeddings(ea, eb)
	if err != nil {
		return core.Resolution{}, fmt.Errorf("vector merge of %s/%q: %w", c.Collection, c.Key, err)
	}
	return core.Resolution{Value: v}, nil
}

// stampedEmbedding decodes r's value, filling a zero content stamp from r.
func stampedEmbedding(r core.Record) (Embedding, error) {
	e, err := DecodeEmbedding(r.Value)
	if err != nil {
		return e, err
	}
	if e.Time == 0 && e.Device.IsZero() {
		e.Time, e.Device = r.Timestamp, r.Origin
	}
	return e, nil
}

func mergeEmbeddings(a, b Embedding) ([]byte, error) {
	stale := a.Stale || b.Stale || a.ContentHash != b.ContentHash
	a.Stale, b.Stale = false, false
	ka, err := a.Encode()
	if err != nil {
		return nil, err
	}
	kb, err := b.Encode()
	if err != nil {
		return nil, err
	}
	w := a
	if compareEmbeddings(&b, &a, kb, ka) > 0 {
		w = b
	}
	w.Stale = stale
	return w.Encode()
}

func compareEmbeddings(a, b *Embedding, ea, eb []byte) int {
	switch {
	case a.Time != b.Time:
		return cmpUint(uint64(a.Time), uint64(b.Time))
	case a.Device != b.Device:
		return a.Device.Compare(b.Device)
	}
	if c := bytes.Compare(a.ContentHash[:], b.ContentHash[:]); c != 0 {
		return c
	}
	return bytes.Compare(ea, eb)
}

// Similarity returns the cosine similarity of a and b, in [-1, 1]. It
// returns 0 when the lengths differ or either vector is zero.
func Similarity(a, b []float32) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return 0
	}
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	s := dot / (math.Sqrt(na) * math.Sqrt(nb))
	return math.Max(-1, math.Min(1, s))
}

// NearDuplicate reports whether a and b point the same way to within
// threshold: Similarity(a, b) >= threshold. Hosts use it to find
// near-duplicate memories across keys (which VectorMerge, working per key,
// cannot see) and, in a ReembedFunc, to skip writing back a vector that
// barely moved.
func NearDuplicate(a, b []float32, threshold float64) bool {
	return len(a) == len(b) && len(a) > 0 && Similarity(a, b) >= threshold
}

// ReembedFunc is the host hook for stale embeddings. The contract:
//
//   - The engine calls it after committing a VectorMerge resolution whose
//     value is Stale (NeedsReembed reports this), outside any store
//     transaction and never while holding locks, since embedding is slow.
//   - It receives the collection, key and decoded stale Embedding, and
//     returns a vector for the content that ContentHash (and Meta)
//     identify. It must be idempotent: every device that merged may call
//     it, and the engine calls it again after a restart or a failure.
//   - The engine then writes Refresh(value, vector) as an ordinary local
//     write, only if the record still holds the stale value (otherwise the
//     newer write already replaced it). Concurrent refreshes by several
//     devices carry the same ContentHash, so they merge without re-marking
//     the value stale.
//   - An error leaves the value stale; the engine retries later. A host
//     without an embedding model may leave the hook unset and read Stale
//     itself.
type ReembedFunc func(ctx context.Context, collection, key string, stale Embedding) ([]float32, error)

// NeedsReembed reports whether an embeddings value is marked stale.
func NeedsReembed(value []byte) (bool, error) {
	e, err := DecodeEmbedding(value)
	if err != nil {
		return false, err
	}
	return e.Stale, nil
}

// Refresh returns value (an Embedding encoding) with its vector replaced by
// vector and the stale flag cleared, ready to be written back.
func Refresh(value []byte, vector []float32) ([]byte, error) {
	e, err := DecodeEmbedding(value)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	e.Vector, e.Stale = vector, false
	return e.Encode()
}
