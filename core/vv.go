package core

import (
	"slices"
	"strconv"
	"strings"
)

// VersionVector maps each replica (a device's incarnation; see
// Record.Origin) to a counter: the highest sequence number of that
// replica's changes that are included. It is used both as a node's
// summary of everything it holds and as a record's causal context. The zero
// value (nil) is the empty vector; methods that modify it need a non-nil map.
type VersionVector map[DeviceID]uint64

// Ordering is the causal relation between two version vectors.
type Ordering int

// Orderings returned by VersionVector.Compare.
const (
	Equal Ordering = iota
	Before
	After
	Concurrent
)

// String names the ordering.
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return "ordering(?)"
}

// Get returns the counter for d (0 when absent).
func (v VersionVector) Get(d DeviceID) uint64 { return v[d] }

// Clone returns an independent copy (never nil).
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	for k, n := range v {
		c[k] = n
	}
	return c
}

// Merge raises every counter of v to at least the counter in o.
func (v VersionVector) Merge(o VersionVector) {
	for k, n := range o {
		if n > v[k] {
			v[k] = n
		}
	}
}

// Includes reports whether the change (d, seq) is covered by v.
func (v VersionVector) Includes(d DeviceID, seq uint64) bool { return v[d] >= seq }

// Compare returns how v relates to o: Before when o has seen everything v has
// and more, After for the converse, Equal, or Concurrent when each has seen
// something the other has not.
func (v VersionVector) Compare(o VersionVector) Ordering {
	less, greater := false, false
	for k, n := range v {
		m := o[k]
		if n < m {
			less = true
		} else if n > m {
			greater = true
		}
	}
	for k, m := range o {
		if _, ok := v[k]; !ok && m > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// Devices returns the devices with a non-zero counter, sorted.
func (v VersionVector) Devices() []DeviceID {
	ds := make([]DeviceID, 0, len(v))
	for d, n := range v {
		if n > 0 {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, DeviceID.Compare)
	return ds
}

// String formats the vector with short device ids, sorted.
func (v VersionVector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, d := range v.Devices() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(d.Short())
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(v[d], 10))
	}
	b.WriteByte('}')
	return b.String()
}
