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
// 0x01, a flags byte (bit 0: Stale; bit 1: Removed; bit 2: a rival
// section follows the header; other bits zero), Time as 8 bytes
// big-endian, Device as 32 bytes, ContentHash as 32 bytes, then, with bit
// 2 only, Rival and Seen each as 8 bytes big-endian plus 32 bytes (bit 2
// is set exactly when one of them is non-zero), then Model and Meta each
// as a uvarint length plus bytes, the dimension as a uvarint, then each
// component as an IEEE 754 float32, 4 bytes big-endian. Components must be
// finite; varints minimal; nothing may follow. Values without a rival
// section have the layout of earlier releases.
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
	// VectorMerge and the engine compute it (Rival after Seen), whatever a
	// host writes.
	Stale bool
	// Removed marks a deleted embedding: the engine writes one for the
	// deletion of a live embedding (see Remover); Vector, ContentHash,
	// Model and Meta are empty.
	Removed bool
	// Rival is the content stamp (Time, Device) of the latest content other
	// than this one that was merged into this value, and Seen the latest
	// content stamp the writer of this content (or of its refresh) had
	// seen; the engine maintains both. Zero values: none.
	Rival, Seen Stamp
}

// Stamp orders contents: hybrid logical time, then device.
type Stamp struct {
	Time   core.Timestamp
	Device core.DeviceID
}

// IsZero reports whether s is the zero stamp.
func (s Stamp) IsZero() bool { return s.Time == 0 && s.Device.IsZero() }

// Compare orders stamps by Time, then Device.
func (s Stamp) Compare(o Stamp) int {
	if s.Time != o.Time {
		return cmpUint(uint64(s.Time), uint64(o.Time))
	}
	return s.Device.Compare(o.Device)
}

func maxStamp(a, b Stamp) Stamp {
	if a.Compare(b) >= 0 {
		return a
	}
	return b
}

func (e *Embedding) stamp() Stamp { return Stamp{e.Time, e.Device} }

const (
	embeddingTag     = 'E'
	embeddingVersion = 1
	flagStale        = 1
	flagRemoved      = 2
	flagRivals       = 4
	embeddingFixed   = 3 + 8 + 32 + 32
	rivalsSize       = 2 * (8 + 32)
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
	if e.Removed {
		flags |= flagRemoved
	}
	rivals := !e.Rival.IsZero() || !e.Seen.IsZero()
	if rivals {
		flags |= flagRivals
	}
	b = append(b, embeddingTag, embeddingVersion, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time))
	b = append(b, e.Device[:]...)
	b = append(b, e.ContentHash[:]...)
	if rivals {
		for _, st := range []Stamp{e.Rival, e.Seen} {
			b = binary.BigEndian.AppendUint64(b, uint64(st.Time))
			b = append(b, st.Device[:]...)
		}
	}
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
	if b[2]&^(flagStale|flagRemoved|flagRivals) != 0 {
		return fail("unknown flags")
	}
	e.Stale = b[2]&flagStale != 0
	e.Removed = b[2]&flagRemoved != 0
	e.Time = core.Timestamp(binary.BigEndian.Uint64(b[3:]))
	copy(e.Device[:], b[11:43])
	copy(e.ContentHash[:], b[43:75])
	rest := b[embeddingFixed:]
	if b[2]&flagRivals != 0 {
		if len(rest) < rivalsSize {
			return fail("truncated rivals")
		}
		for _, st := range []*Stamp{&e.Rival, &e.Seen} {
			st.Time = core.Timestamp(binary.BigEndian.Uint64(rest))
			copy(st.Device[:], rest[8:40])
			rest = rest[40:]
		}
		if e.Rival.IsZero() && e.Seen.IsZero() {
			return fail("empty rivals section")
		}
	}
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
	if e.Removed && (e.ContentHash != [32]byte{} || e.Model != "" || len(e.Meta) > 0 || len(e.Vector) > 0) {
		return fail("removed embedding with content")
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
// The result is a function of the set of versions merged, whatever their
// order and grouping: the pick is the greatest version by (Time, Device,
// ContentHash, Seen, encoding); Rival is the latest stamp of a merged
// content other than the pick's; Seen is the greatest Seen among the
// versions of the pick's own content. The value is Stale when Rival is
// after Seen: a different content was merged that the pick's writer (or
// its last refresh) had not seen. A local write of an embedding goes
// through Prepare, which stamps it and sets Seen to everything its writer
// holds, so a new content or a refresh (Refresh) clears the flag for good
// while a concurrent different content still sets it on every device. A
// deletion of a live embedding is written as a Removed embedding (Remove),
// an ordinary content in this order, so that a deletion replaces what it
// saw and a concurrent later content survives it.
type VectorMerge struct{}

var (
	_ core.Resolver = VectorMerge{}
	_ Remover       = VectorMerge{}
	_ Preparer      = VectorMerge{}
)

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
	a.Stale, b.Stale = false, false
	// The tie-break encodings leave out Rival, which depends on what else a
	// side merged, not on the version itself.
	ta, tb := a, b
	ta.Rival, tb.Rival = Stamp{}, Stamp{}
	ka, err := ta.Encode()
	if err != nil {
		return nil, err
	}
	kb, err := tb.Encode()
	if err != nil {
		return nil, err
	}
	w, l := a, b
	if compareEmbeddings(&b, &a, kb, ka) > 0 {
		w, l = b, a
	}
	// Rival: the latest other content on the winner's side (its Rival) and
	// on the loser's (the loser itself when its content differs: it is the
	// latest there; else the loser's Rival).
	rival := l.Rival
	if !sameContent(&w, &l) {
		rival = l.stamp()
	}
	w.Rival = maxStamp(w.Rival, rival)
	if w.stamp() == l.stamp() && sameContent(&w, &l) {
		w.Seen = maxStamp(w.Seen, l.Seen)
	}
	w.Stale = !w.Removed && w.Rival.Compare(w.Seen) > 0
	return w.Encode()
}

func sameContent(a, b *Embedding) bool {
	return a.Removed == b.Removed && a.ContentHash == b.ContentHash
}

func compareEmbeddings(a, b *Embedding, ea, eb []byte) int {
	if c := a.stamp().Compare(b.stamp()); c != 0 {
		return c
	}
	if c := bytes.Compare(a.ContentHash[:], b.ContentHash[:]); c != 0 {
		return c
	}
	if c := a.Seen.Compare(b.Seen); c != 0 {
		return c
	}
	return bytes.Compare(ea, eb)
}

// Preparer is implemented by the strategies whose local writes the engine
// completes before committing them: Prepare returns the value to write in
// place of value, given the record's current value (nil when absent or a
// tombstone), the write's time ts and the writing device dev.
type Preparer interface {
	Prepare(current, value []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error)
}

// Prepare stamps a new embedding (Time and Device from the write when zero
// or not after the current content, so that a write always supersedes
// what it replaces in VectorMerge's order) and records in Seen the latest
// content stamp the writer holds: a refresh of a stale current content
// (same stamp and hash) keeps its stamp and clears the flag; a new content
// starts clean. A different content merged later is its rival, and makes
// it stale, only if its stamp is after Seen.
func (VectorMerge) Prepare(current, value []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	e, err := DecodeEmbedding(value)
	if err != nil {
		return nil, fmt.Errorf("prepare embedding: %w", err)
	}
	var cur Embedding
	if current != nil {
		if cur, err = DecodeEmbedding(current); err != nil {
			return nil, fmt.Errorf("prepare embedding: current: %w", err)
		}
	}
	// Seen: the latest content stamp the writer holds.
	seen := maxStamp(cur.stamp(), maxStamp(cur.Rival, cur.Seen))
	switch {
	case current != nil && cur.Rival.Compare(cur.Seen) > 0 && e.stamp() == cur.stamp() && sameContent(&e, &cur):
		// A refresh of a stale value: it keeps its content's stamp, and
		// its Seen, now its rivals' (after the stale value's), puts it
		// after the value it replaces.
		e.Rival = cur.Rival
	default:
		if e.stamp().IsZero() || (current != nil && e.stamp().Compare(cur.stamp()) <= 0) {
			e.Time, e.Device = max(ts, cur.Time+1), dev
		}
		e.Rival = Stamp{}
		if current != nil {
			// The new content supersedes everything its writer holds.
			e.Rival = cur.Rival
			if !sameContent(&e, &cur) {
				e.Rival = maxStamp(e.Rival, cur.stamp())
			}
		}
	}
	e.Seen = seen
	e.Stale = !e.Removed && e.Rival.Compare(e.Seen) > 0
	return e.Encode()
}

// Remove returns the Removed embedding that deletes current, stamped with
// the deletion's time and device.
func (m VectorMerge) Remove(current []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	v, err := Embedding{Removed: true, Time: ts, Device: dev}.Encode()
	if err != nil {
		return nil, err
	}
	return m.Prepare(current, v, ts, dev)
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
	return e.Stale && !e.Removed, nil
}

// Refresh returns value (an Embedding encoding) with its vector replaced by
// vector and the stale flag cleared, ready to be written back.
func Refresh(value []byte, vector []float32) ([]byte, error) {
	e, err := DecodeEmbedding(value)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	e.Vector, e.Stale = vector, false
	e.Seen = maxStamp(e.Seen, e.Rival)
	return e.Encode()
}
