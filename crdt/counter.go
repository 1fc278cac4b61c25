package crdt

import (
	"fmt"
	"math"
	"slices"

	"github.com/devicemesh/federation/core"
)

// GCounter is a grow-only counter: each device increments its own entry and
// a merge keeps the larger entry per device. The zero value is not usable;
// create one with NewGCounter.
//
// Encoding: tag 0x04, version 0x01, then the body: a uvarint count of
// entries, and per entry in ascending device order the 32-byte device and a
// uvarint count (never zero: zero entries are omitted).
type GCounter struct {
	n map[core.DeviceID]uint64
}

// NewGCounter returns a counter at zero.
func NewGCounter() *GCounter { return &GCounter{n: make(map[core.DeviceID]uint64)} }

// Inc adds delta to dev's entry. It returns ErrOverflow, leaving the counter
// unchanged, if the entry or the total would exceed math.MaxUint64.
func (c *GCounter) Inc(dev core.DeviceID, delta uint64) error {
	if delta > math.MaxUint64-c.n[dev] || delta > math.MaxUint64-c.Value() {
		return fmt.Errorf("gcounter inc: %w", ErrOverflow)
	}
	if delta > 0 {
		c.n[dev] += delta
	}
	return nil
}

// Count returns dev's entry.
func (c *GCounter) Count(dev core.DeviceID) uint64 { return c.n[dev] }

// Value returns the sum of all entries, saturating at math.MaxUint64 (which
// only merged states from misbehaving devices can reach).
func (c *GCounter) Value() uint64 {
	var sum uint64
	for _, v := range c.n {
		if v > math.MaxUint64-sum {
			return math.MaxUint64
		}
		sum += v
	}
	return sum
}

// Merge keeps, per device, the larger of the two entries.
func (c *GCounter) Merge(o *GCounter) {
	for d, v := range o.n {
		if v > c.n[d] {
			c.n[d] = v
		}
	}
}

// Clone returns an independent copy.
func (c *GCounter) Clone() *GCounter {
	out := NewGCounter()
	for d, v := range c.n {
		out.n[d] = v
	}
	return out
}

// Encode returns the canonical encoding.
func (c *GCounter) Encode() []byte {
	e := newEnc(tagGCounter, 1+len(c.n)*40)
	c.encodeBody(e)
	return e.b
}

func (c *GCounter) encodeBody(e *enc) {
	ds := make([]core.DeviceID, 0, len(c.n))
	for d, v := range c.n {
		if v > 0 {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, core.DeviceID.Compare)
	e.uvarint(uint64(len(ds)))
	for _, d := range ds {
		e.device(d)
		e.uvarint(c.n[d])
	}
}

func decodeGCounterBody(d *dec) *GCounter {
	c := NewGCounter()
	n := d.count(33)
	var prev core.DeviceID
	for i := 0; i < n && d.ok(); i++ {
		id := d.device()
		v := d.uvarint()
		if i > 0 && prev.Compare(id) >= 0 {
			d.fail("counter devices not strictly ascending")
		}
		if v == 0 {
			d.fail("zero counter entry")
		}
		c.n[id] = v
		prev = id
	}
	return c
}

// DecodeGCounter decodes a GCounter encoding. An empty input is a counter at
// zero.
func DecodeGCounter(b []byte) (*GCounter, error) {
	if len(b) == 0 {
		return NewGCounter(), nil
	}
	d := newDec(b, tagGCounter)
	c := decodeGCounterBody(d)
	if err := d.end(); err != nil {
		return nil, wrapDecode("gcounter", err)
	}
	return c, nil
}

// PNCounter is a counter that can go up and down: a pair of GCounters, one
// for increments and one for decrements. Create one with NewPNCounter.
//
// Encoding: tag 0x05, version 0x01, then the increment GCounter body and
// the decrement GCounter body (each as described at GCounter).
type PNCounter struct {
	p, n *GCounter
}

// NewPNCounter returns a counter at zero.
func NewPNCounter() *PNCounter { return &PNCounter{p: NewGCounter(), n: NewGCounter()} }

// Inc adds delta on behalf of dev.
func (c *PNCounter) Inc(dev core.DeviceID, delta uint64) error { return c.p.Inc(dev, delta) }

// Dec subtracts delta on behalf of dev.
func (c *PNCounter) Dec(dev core.DeviceID, delta uint64) error { return c.n.Inc(dev, delta) }

// Value returns increments minus decrements, clamped to the int64 range.
func (c *PNCounter) Value() int64 {
	p, n := c.p.Value(), c.n.Value()
	if p >= n {
		if p-n > math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(p - n)
	}
	if n-p > uint64(math.MaxInt64)+1 {
		return math.MinInt64
	}
	return int64(-(n - p)) // wraps correctly for n-p == 1<<63
}

// Merge merges both halves.
func (c *PNCounter) Merge(o *PNCounter) {
	c.p.Merge(o.p)
	c.n.Merge(o.n)
}

// Clone returns an independent copy.
func (c *PNCounter) Clone() *PNCounter { return &PNCounter{p: c.p.Clone(), n: c.n.Clone()} }

// Encode returns the canonical encoding.
func (c *PNCounter) Encode() []byte {
	e := newEnc(tagPNCounter, 2+(len(c.p.n)+len(c.n.n))*40)
	c.p.encodeBody(e)
	c.n.encodeBody(e)
	return e.b
}

// DecodePNCounter decodes a PNCounter encoding. An empty input is a counter
// at zero.
func DecodePNCounter(b []byte) (*PNCounter, error) {
	if len(b) == 0 {
		return NewPNCounter(), nil
	}
	d := newDec(b, tagPNCounter)
	c := &PNCounter{p: decodeGCounterBody(d)}
	c.n = decodeGCounterBody(d)
	if err := d.end(); err != nil {
		return nil, wrapDecode("pncounter", err)
	}
	return c, nil
}
