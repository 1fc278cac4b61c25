package conflict

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/devicemesh/federation/core"
)

// MaxFieldName bounds a profile field name in bytes.
const MaxFieldName = 256

// FieldMerge merges JSON objects field by field, last-writer-wins per field,
// for the user profile. A record version carries a single timestamp, so
// each field carries its own: the value is a JSON object mapping each field
// name to an entry
//
//	{"v": <any JSON value>, "t": "<HLC timestamp, decimal>", "d": "<device id, 64 lowercase hex digits>"}
//
// or, for a deleted field, {"t": ..., "d": ..., "del": true} (no "v").
// The timestamp is a decimal string so that hosts whose JSON numbers are
// doubles keep all 64 bits. Use ProfileSet, ProfileDelete, ProfileGet and
// ProfileFields rather than writing entries by hand.
//
// The merge keeps, per field, the entry with the higher (t, d), then a
// deletion over a live entry, then the greater "v" bytes: a total order, so
// the outcome is symmetric, and since it is a per-field maximum it is
// convergent without needing the common ancestor (Base is ignored). Two
// devices editing different fields concurrently both keep their edit; on
// the same field the later edit wins. Output is compact JSON with fields in
// sorted order. An empty value is the empty profile. Deleting a profile
// record deletes the fields it holds (Remove).
type FieldMerge struct{}

var _ core.Resolver = FieldMerge{}

// Resolve merges the two profiles; see resolveJoin for tombstones.
func (FieldMerge) Resolve(_ context.Context, c core.Conflict) (core.Resolution, error) {
	return resolveJoin("field", c, ProfileMerge)
}

// fieldEntry is one field of a profile value. V holds compact JSON.
type fieldEntry struct {
	V   json.RawMessage `json:"v,omitempty"`
	T   string          `json:"t"`
	D   string          `json:"d"`
	Del bool            `json:"del,omitempty"`

	ts  core.Timestamp
	dev core.DeviceID
}

type profile map[string]*fieldEntry

func compareEntries(a, b *fieldEntry) int {
	switch {
	case a.ts != b.ts:
		return cmpUint(uint64(a.ts), uint64(b.ts))
	case a.dev != b.dev:
		return a.dev.Compare(b.dev)
	case a.Del != b.Del:
		if a.Del {
			return 1
		}
		return -1
	}
	return bytes.Compare(a.V, b.V)
}

func decodeProfile(b []byte) (profile, error) {
	p := profile{}
	if len(b) == 0 {
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: profile: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: profile: trailing data", ErrMalformed)
	}
	if p == nil { // the JSON literal null
		return nil, fmt.Errorf("%w: profile: not an object", ErrMalformed)
	}
	for name, e := range p {
		if err := e.check(name); err != nil {
			return nil, fmt.Errorf("%w: profile field %q: %w", ErrMalformed, name, err)
		}
	}
	return p, nil
}

var errEntry = errors.New("bad entry")

// check validates an entry decoded from JSON and fills ts and dev.
func (e *fieldEntry) check(name string) error {
	if e == nil {
		return fmt.Errorf("%w: null", errEntry)
	}
	if name == "" || len(name) > MaxFieldName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: field name", errEntry)
	}
	ts, err := strconv.ParseUint(e.T, 10, 64)
	if err != nil || strconv.FormatUint(ts, 10) != e.T {
		return fmt.Errorf("%w: timestamp %q", errEntry, e.T)
	}
	e.ts = core.Timestamp(ts)
	raw, err := hex.DecodeString(e.D)
	if err != nil || len(raw) != len(e.dev) || hex.EncodeToString(raw) != e.D {
		return fmt.Errorf("%w: device %q", errEntry, e.D)
	}
	copy(e.dev[:], raw)
	if e.Del != (len(e.V) == 0) {
		return fmt.Errorf("%w: exactly one of v and del", errEntry)
	}
	if !e.Del {
		var buf bytes.Buffer
		if err := json.Compact(&buf, e.V); err != nil {
			return fmt.Errorf("%w: v: %w", errEntry, err)
		}
		e.V = buf.Bytes()
	}
	return nil
}

func (p profile) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "v" bytes exactly as compacted
	if err := enc.Encode(map[string]*fieldEntry(p)); err != nil {
		return nil, fmt.Errorf("encode profile: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// put installs e for name if it beats the current entry.
func (p profile) put(name string, e *fieldEntry) {
	if cur, ok := p[name]; !ok || compareEntries(e, cur) > 0 {
		p[name] = e
	}
}

var _ Remover = FieldMerge{}

// Remove deletes every live field of profile old as of ts by dev (field
// deletions are last-writer-wins entries: a concurrent later write of a
// field keeps it).
func (FieldMerge) Remove(old []byte, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	p, err := decodeProfile(old)
	if err != nil {
		return nil, fmt.Errorf("profile remove: %w", err)
	}
	for name, e := range p {
		if !e.Del {
			p.put(name, &fieldEntry{Del: true, T: strconv.FormatUint(uint64(ts), 10), D: hex.EncodeToString(dev[:])})
		}
	}
	return p.encode()
}

// ProfileMerge returns the field-wise last-writer-wins merge of two profile
// values (see FieldMerge).
func ProfileMerge(a, b []byte) ([]byte, error) {
	pa, err := decodeProfile(a)
	if err != nil {
		return nil, err
	}
	pb, err := decodeProfile(b)
	if err != nil {
		return nil, err
	}
	for name, e := range pb {
		pa.put(name, e)
	}
	return pa.encode()
}

// ProfileSet returns profile value old (nil for an empty profile) with field
// set to value, JSON-encoded, as written at ts by dev. As everywhere in a
// last-writer-wins field, a write not newer than the field's current entry
// is ignored; hosts pass a fresh reading of the node's clock, which is
// newer than every timestamp the device has seen.
func ProfileSet(old []byte, field string, value any, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // store text as written; escaping is the reader's business
	if err := enc.Encode(value); err != nil {
		return nil, fmt.Errorf("profile set %q: %w: %w", field, ErrInvalidArgument, err)
	}
	return profileWrite(old, field, &fieldEntry{V: bytes.TrimSuffix(buf.Bytes(), []byte("\n"))}, ts, dev)
}

// ProfileDelete returns profile value old with field deleted as of ts by
// dev. The deletion is kept as a timestamped entry so that it wins over
// older concurrent values of the field.
func ProfileDelete(old []byte, field string, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	return profileWrite(old, field, &fieldEntry{Del: true}, ts, dev)
}

func profileWrite(old []byte, field string, e *fieldEntry, ts core.Timestamp, dev core.DeviceID) ([]byte, error) {
	p, err := decodeProfile(old)
	if err != nil {
		return nil, fmt.Errorf("profile write: %w", err)
	}
	e.T = strconv.FormatUint(uint64(ts), 10)
	e.D = hex.EncodeToString(dev[:])
	if err := e.check(field); err != nil {
		return nil, fmt.Errorf("profile write %q: %w: %w", field, ErrInvalidArgument, err)
	}
	p.put(field, e)
	return p.encode()
}

// ProfileGet returns the JSON value of field in a profile value, and false
// if the field is absent or deleted.
func ProfileGet(value []byte, field string) (json.RawMessage, bool, error) {
	p, err := decodeProfile(value)
	if err != nil {
		return nil, false, fmt.Errorf("profile get: %w", err)
	}
	e, ok := p[field]
	if !ok || e.Del {
		return nil, false, nil
	}
	return e.V, true, nil
}

// ProfileFields returns the live fields of a profile value and their JSON
// values: the plain object a host shows or edits.
func ProfileFields(value []byte) (map[string]json.RawMessage, error) {
	p, err := decodeProfile(value)
	if err != nil {
		return nil, fmt.Errorf("profile fields: %w", err)
	}
	out := make(map[string]json.RawMessage, len(p))
	for name, e := range p {
		if !e.Del {
			out[name] = e.V
		}
	}
	return out, nil
}
