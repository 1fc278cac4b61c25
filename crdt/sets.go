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

// GSet is a grow-only set of byte strings with observed removal: elements
// are added, a merge is the union, and Remove retires an element for good
// (a two-phase set: an element removed on any device stays removed, and
// adding it again is a no-op). It backs append-only data such as analytics
// events, whose elements are unique, so that deleting a record removes
// exactly the events its writer had seen. The zero value is an empty set.
//
// Encoding: tag 0x08, version 0x01, a uvarint element count, then each
// element as uvarint length plus bytes, in strictly ascending byte order.
// A set with removed elements uses version 0x02: the same element list,
// then a uvarint count (at least 1) of removed elements and each of them
// the same way, strictly ascending and disjoint from the elements. A set
// without removals always encodes as version 0x01, so values written
// before removals existed keep their bytes.
type GSet struct {
	elems   [][]byte // sorted, distinct, none removed
	removed [][]byte // sorted, distinct
}

// gsetRemovals is the format version of a GSet with removed elements.
const gsetRemovals byte = 2

// Add inserts elem (a copy); adding an element already present or removed
// is a no-op.
func (s *GSet) Add(elem []byte) {
	if _, gone := slices.BinarySearchFunc(s.removed, elem, bytes.Compare); gone {
		return
	}
	i, found := slices.BinarySearchFunc(s.elems, elem, bytes.Compare)
	if !found {
		s.elems = slices.Insert(s.elems, i, slices.Clone(elem))
	}
}

// Remove retires elem for good, whether or not the set holds it.
func (s *GSet) Remove(elem []byte) {
	if i, found := slices.BinarySearchFunc(s.elems, elem, bytes.Compare); found {
		s.elems = slices.Delete(s.elems, i, i+1)
	}
	i, found := slices.BinarySearchFunc(s.removed, elem, bytes.Compare)
	if !found {
		s.removed = slices.Insert(s.removed, i, slices.Clone(elem))
	}
}

// RemoveAll retires every element the set holds.
func (s *GSet) RemoveAll() {
	s.removed = unionSorted(s.removed, s.elems)
	s.elems = nil
}

// Contains reports whether elem is in the set.
func (s *GSet) Contains(elem []byte) bool {
	_, found := slices.BinarySearchFunc(s.elems, elem, bytes.Compare)
	return found
}

// Elements returns the elements in ascending byte order. The caller must
// not modify the returned slices.
func (s *GSet) Elements() [][]byte { return s.elems }

// Removed returns the removed elements in ascending byte order. The caller
// must not modify the returned slices.
func (s *GSet) Removed() [][]byte { return s.removed }

// Len returns the number of elements.
func (s *GSet) Len() int { return len(s.elems) }

// Merge sets s to the union of s and o, less every element removed on
// either side. It does not retain o's slices.
func (s *GSet) Merge(o *GSet) {
	s.removed = unionSorted(s.removed, o.removed)
	elems := unionSorted(s.elems, o.elems)
	if len(s.removed) > 0 {
		elems = slices.DeleteFunc(elems, func(e []byte) bool {
			_, gone := slices.BinarySearchFunc(s.removed, e, bytes.Compare)
			return gone
		})
	}
	s.elems = elems
}

// unionSorted returns the union of two sorted distinct lists, copying what
// it takes from b.
func unionSorted(a, b [][]byte) [][]byte {
	out := make([][]byte, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := bytes.Compare(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, slices.Clone(b[j]))
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	for ; j < len(b); j++ {
		out = append(out, slices.Clone(b[j]))
	}
	return out
}

// Clone returns an independent copy.
func (s *GSet) Clone() *GSet {
	c := &GSet{elems: make([][]byte, len(s.elems))}
	for i, e := range s.elems {
		c.elems[i] = slices.Clone(e)
	}
	for _, e := range s.removed {
		c.removed = append(c.removed, slices.Clone(e))
	}
	return c
}

// Encode returns the canonical encoding.
func (s *GSet) Encode() []byte {
	size := 12
	for _, e := range s.elems {
		size += 4 + len(e)
	}
	for _, e := range s.removed {
		size += 4 + len(e)
	}
	e := newEnc(tagGSet, size)
	e.uvarint(uint64(len(s.elems)))
	for _, el := range s.elems {
		e.bytes(el)
	}
	if len(s.removed) > 0 {
		e.b[1] = gsetRemovals
		e.uvarint(uint64(len(s.removed)))
		for _, el := range s.removed {
			e.bytes(el)
		}
	}
	return e.b
}

// DecodeGSet decodes a GSet encoding. An empty input is the empty set.
func DecodeGSet(b []byte) (*GSet, error) {
	s := &GSet{}
	if len(b) == 0 {
		return s, nil
	}
	removals := len(b) >= 2 && b[0] == tagGSet && b[1] == gsetRemovals
	if removals {
		b = append([]byte{tagGSet, formatVersion}, b[2:]...)
	}
	d := newDec(b, tagGSet)
	s.elems = decodeSortedList(d)
	if removals && d.ok() {
		s.removed = decodeSortedList(d)
		if d.ok() && len(s.removed) == 0 {
			d.fail("empty list of removed elements")
		}
		for _, e := range s.elems {
			if _, gone := slices.BinarySearchFunc(s.removed, e, bytes.Compare); gone && d.ok() {
				d.fail("an element is also removed")
			}
		}
	}
	if err := d.end(); err != nil {
		return nil, wrapDecode("gset", err)
	}
	return s, nil
}

// decodeSortedList reads a uvarint count and that many strictly ascending
// byte strings.
func decodeSortedList(d *dec) [][]byte {
	n := d.count(1)
	out := make([][]byte, 0, n)
	for i := 0; i < n && d.ok(); i++ {
		el := d.bytes()
		if d.ok() && i > 0 && bytes.Compare(out[i-1], el) >= 0 {
			d.fail("elements not strictly ascending")
		}
		out = append(out, el)
	}
	return out
}
