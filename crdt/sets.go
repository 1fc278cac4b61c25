package crdt

import (
	"bytes"
	"slices"

	"github.com/devicemesh/federation/core"
)

// ORSet is an observed-remove set of byte strings with add-wins semantics:
// a remove deletes only the additions its replica has observed, so an add
// concurrent with a remove of the same element survives. Create one with
// NewORSet.
//
// Encoding: tag 0x03, version 0x01, then the dot-kernel body: a device
// table (uvarint count, 32-byte ids ascending), one uvarint causal-context
// counter per table device (non-zero), a uvarint entry count, and per entry
// in ascending (device, counter) order a uvarint device index, a uvarint
// dot counter (1..context counter) and the element as uvarint length plus
// bytes.
type ORSet struct{ k dotKernel }

// NewORSet returns an empty set.
func NewORSet() *ORSet { return &ORSet{k: newDotKernel()} }

// Add inserts elem on behalf of dev. Earlier additions of elem observed here
// are superseded by the new one, so the state does not grow with repeated
// adds.
func (s *ORSet) Add(dev core.DeviceID, elem []byte) {
	s.Remove(elem)
	s.k.insert(dotEntry{dot: s.k.next(dev), payload: slices.Clone(elem)})
}

// Remove deletes every observed addition of elem.
func (s *ORSet) Remove(elem []byte) {
	s.k.removeIf(func(e dotEntry) bool { return bytes.Equal(e.payload, elem) })
}

// Contains reports whether elem is in the set.
func (s *ORSet) Contains(elem []byte) bool {
	for _, e := range s.k.entries {
		if bytes.Equal(e.payload, elem) {
			return true
		}
	}
	return false
}

// Elements returns the distinct elements in ascending byte order. The
// slices are copies.
func (s *ORSet) Elements() [][]byte { return distinctPayloads(s.k.entries) }

// Len returns the number of distinct elements.
func (s *ORSet) Len() int { return len(distinctPayloads(s.k.entries)) }

// Merge folds o into s. It does not retain o's slices.
func (s *ORSet) Merge(o *ORSet) { s.k.merge(&o.k) }

// Clone returns an independent copy.
func (s *ORSet) Clone() *ORSet { return &ORSet{k: s.k.clone()} }

// Encode returns the canonical encoding.
func (s *ORSet) Encode() []byte { return s.k.encode(tagORSet) }

// DecodeORSet decodes an ORSet encoding. An empty input is the empty set.
func DecodeORSet(b []byte) (*ORSet, error) {
	if len(b) == 0 {
		return NewORSet(), nil
	}
	k, err := decodeDotKernel(b, tagORSet)
	if err != nil {
		return nil, wrapDecode("orset", err)
	}
	return &ORSet{k: k}, nil
}

// MVRegister is a multi-value register: an assignment overwrites every value
// its replica has observed, and concurrent assignments are all kept until a
// later assignment overwrites them, so the host sees the conflict and can
// choose. Create one with NewMVRegister.
//
// Encoding: tag 0x02, version 0x01, then the same dot-kernel body as ORSet,
// each entry's payload being one concurrent value.
type MVRegister struct{ k dotKernel }

// NewMVRegister returns an empty register.
func NewMVRegister() *MVRegister { return &MVRegister{k: newDotKernel()} }

// Set assigns value on behalf of dev, overwriting every value observed here.
func (r *MVRegister) Set(dev core.DeviceID, value []byte) {
	r.k.entries = r.k.entries[:0]
	r.k.insert(dotEntry{dot: r.k.next(dev), payload: slices.Clone(value)})
}

// Values returns the concurrent values, distinct and in ascending byte
// order; one value when there is no conflict, none when never set. The
// slices are copies.
func (r *MVRegister) Values() [][]byte { return distinctPayloads(r.k.entries) }

// Merge folds o into r. It does not retain o's slices.
func (r *MVRegister) Merge(o *MVRegister) { r.k.merge(&o.k) }

// Clone returns an independent copy.
func (r *MVRegister) Clone() *MVRegister { return &MVRegister{k: r.k.clone()} }

// Encode returns the canonical encoding.
func (r *MVRegister) Encode() []byte { return r.k.encode(tagMV) }

// DecodeMVRegister decodes an MVRegister encoding. An empty input is the
// empty register.
func DecodeMVRegister(b []byte) (*MVRegister, error) {
	if len(b) == 0 {
		return NewMVRegister(), nil
	}
	k, err := decodeDotKernel(b, tagMV)
	if err != nil {
		return nil, wrapDecode("mvregister", err)
	}
	return &MVRegister{k: k}, nil
}

func distinctPayloads(es []dotEntry) [][]byte {
	out := make([][]byte, 0, len(es))
	for _, e := range es {
		out = append(out, slices.Clone(e.payload))
	}
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal)
}

// GSet is a grow-only set of byte strings: elements are added, never
// removed, and a merge is the union. It backs append-only data such as
// analytics events. The zero value is an empty set.
//
// Encoding: tag 0x08, version 0x01, a uvarint element count, then each
// element as uvarint length plus bytes, in strictly ascending byte order.
type GSet struct {
	elems [][]byte // sorted, distinct
}

// Add inserts elem (a copy); adding an element already present is a no-op.
func (s *GSet) Add(elem []byte) {
	i, found := slices.BinarySearchFunc(s.elems, elem, bytes.Compare)
	if !found {
		s.elems = slices.Insert(s.elems, i, slices.Clone(elem))
	}
}

// Contains reports whether elem is in the set.
func (s *GSet) Contains(elem []byte) bool {
	_, found := slices.BinarySearchFunc(s.elems, elem, bytes.Compare)
	return found
}

// Elements returns the elements in ascending byte order. The caller must
// not modify the returned slices.
func (s *GSet) Elements() [][]byte { return s.elems }

// Len returns the number of elements.
func (s *GSet) Len() int { return len(s.elems) }

// Merge sets s to the union of s and o. It does not retain o's slices.
func (s *GSet) Merge(o *GSet) {
	out := make([][]byte, 0, len(s.elems)+len(o.elems))
	i, j := 0, 0
	for i < len(s.elems) && j < len(o.elems) {
		switch c := bytes.Compare(s.elems[i], o.elems[j]); {
		case c < 0:
			out = append(out, s.elems[i])
			i++
		case c > 0:
			out = append(out, slices.Clone(o.elems[j]))
			j++
		default:
			out = append(out, s.elems[i])
			i++
			j++
		}
	}
	out = append(out, s.elems[i:]...)
	for ; j < len(o.elems); j++ {
		out = append(out, slices.Clone(o.elems[j]))
	}
	s.elems = out
}

// Clone returns an independent copy.
func (s *GSet) Clone() *GSet {
	c := &GSet{elems: make([][]byte, len(s.elems))}
	for i, e := range s.elems {
		c.elems[i] = slices.Clone(e)
	}
	return c
}

// Encode returns the canonical encoding.
func (s *GSet) Encode() []byte {
	size := 10
	for _, e := range s.elems {
		size += 4 + len(e)
	}
	e := newEnc(tagGSet, size)
	e.uvarint(uint64(len(s.elems)))
	for _, el := range s.elems {
		e.bytes(el)
	}
	return e.b
}

// DecodeGSet decodes a GSet encoding. An empty input is the empty set.
func DecodeGSet(b []byte) (*GSet, error) {
	s := &GSet{}
	if len(b) == 0 {
		return s, nil
	}
	d := newDec(b, tagGSet)
	n := d.count(1)
	s.elems = make([][]byte, 0, n)
	for i := 0; i < n && d.ok(); i++ {
		el := d.bytes()
		if d.ok() && i > 0 && bytes.Compare(s.elems[i-1], el) >= 0 {
			d.fail("elements not strictly ascending")
		}
		s.elems = append(s.elems, el)
	}
	if err := d.end(); err != nil {
		return nil, wrapDecode("gset", err)
	}
	return s, nil
}
