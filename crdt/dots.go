package crdt

import (
	"bytes"
	"slices"

	"github.com/devicemesh/federation/core"
)

// Dot identifies one update: the Counter-th update made by Device.
type Dot struct {
	Device  core.DeviceID
	Counter uint64
}

func compareDot(a, b Dot) int {
	if c := a.Device.Compare(b.Device); c != 0 {
		return c
	}
	switch {
	case a.Counter < b.Counter:
		return -1
	case a.Counter > b.Counter:
		return 1
	}
	return 0
}

// maxDotCounter bounds decoded context counters. A device advances its
// counter by one per update, so no real state comes near it, and the bound
// keeps next from ever wrapping to the invalid counter zero.
const maxDotCounter = 1 << 62

type dotEntry struct {
	dot     Dot
	payload []byte
}

// dotKernel is the state shared by the multi-value register and the
// observed-remove set: live entries, each tagged with a unique dot, and a
// causal context (a version vector) covering every dot ever seen, live or
// removed. Entries are kept sorted by dot; dots are unique.
//
// Merging keeps an entry if both sides hold it, or if the other side has
// never seen its dot; an entry one side holds and the other has seen but
// dropped was removed (or overwritten) and stays removed. This is the
// standard optimized OR-set / MV-register join, which is commutative,
// associative and idempotent.
type dotKernel struct {
	ctx     core.VersionVector
	entries []dotEntry
}

func newDotKernel() dotKernel { return dotKernel{ctx: core.VersionVector{}} }

// next returns a fresh dot for dev and records it in the context.
func (k *dotKernel) next(dev core.DeviceID) Dot {
	k.ctx[dev]++
	return Dot{Device: dev, Counter: k.ctx[dev]}
}

// insert adds an entry, keeping entries sorted by dot.
func (k *dotKernel) insert(e dotEntry) {
	i, _ := slices.BinarySearchFunc(k.entries, e.dot, func(x dotEntry, d Dot) int { return compareDot(x.dot, d) })
	k.entries = slices.Insert(k.entries, i, e)
}

func (k *dotKernel) removeIf(drop func(dotEntry) bool) {
	k.entries = slices.DeleteFunc(k.entries, drop)
}

func (k *dotKernel) merge(o *dotKernel) {
	out := make([]dotEntry, 0, len(k.entries)+len(o.entries))
	i, j := 0, 0
	for i < len(k.entries) || j < len(o.entries) {
		var c int
		switch {
		case i == len(k.entries):
			c = 1
		case j == len(o.entries):
			c = -1
		default:
			c = compareDot(k.entries[i].dot, o.entries[j].dot)
		}
		switch {
		case c == 0:
			// Both hold the dot. A correct device never reuses a dot with
			// another payload; if one did, keep the greater payload so the
			// result is still deterministic.
			e := k.entries[i]
			if bytes.Compare(o.entries[j].payload, e.payload) > 0 {
				e.payload = slices.Clone(o.entries[j].payload)
			}
			out = append(out, e)
			i++
			j++
		case c < 0:
			if e := k.entries[i]; !o.ctx.Includes(e.dot.Device, e.dot.Counter) {
				out = append(out, e)
			}
			i++
		default:
			if e := o.entries[j]; !k.ctx.Includes(e.dot.Device, e.dot.Counter) {
				out = append(out, dotEntry{dot: e.dot, payload: slices.Clone(e.payload)})
			}
			j++
		}
	}
	k.entries = out
	k.ctx.Merge(o.ctx)
}

func (k *dotKernel) clone() dotKernel {
	c := dotKernel{ctx: k.ctx.Clone(), entries: make([]dotEntry, len(k.entries))}
	for i, e := range k.entries {
		c.entries[i] = dotEntry{dot: e.dot, payload: slices.Clone(e.payload)}
	}
	return c
}

// encode writes: the device table (every device with a non-zero context
// counter, ascending), one uvarint context counter per table device, a
// uvarint entry count, then per entry in ascending dot order the device
// index, the dot counter and the length-prefixed payload.
func (k *dotKernel) encode(tag byte) []byte {
	ds := k.ctx.Devices()
	idx := make(map[core.DeviceID]int, len(ds))
	size := 2 + len(ds)*42
	for i, d := range ds {
		idx[d] = i
	}
	for _, e := range k.entries {
		size += 12 + len(e.payload)
	}
	e := newEnc(tag, size)
	e.devices(ds)
	for _, d := range ds {
		e.uvarint(k.ctx[d])
	}
	e.uvarint(uint64(len(k.entries)))
	for _, en := range k.entries {
		e.uvarint(uint64(idx[en.dot.Device]))
		e.uvarint(en.dot.Counter)
		e.bytes(en.payload)
	}
	return e.b
}

// decodeDotKernel checks every invariant merge relies on: context counters
// are non-zero, dots are covered by the context, entries strictly ascend.
func decodeDotKernel(b []byte, tag byte) (dotKernel, error) {
	k := newDotKernel()
	d := newDec(b, tag)
	ds := d.devices()
	for _, dev := range ds {
		c := d.uvarint()
		if d.ok() && (c == 0 || c > maxDotCounter) {
			d.fail("context counter out of range")
		}
		k.ctx[dev] = c
	}
	n := d.count(3)
	k.entries = make([]dotEntry, 0, n)
	for i := 0; i < n && d.ok(); i++ {
		di := d.index(len(ds))
		if !d.ok() {
			break
		}
		dev := ds[di]
		e := dotEntry{dot: Dot{Device: dev, Counter: d.uvarint()}, payload: d.bytes()}
		switch {
		case !d.ok():
		case e.dot.Counter == 0 || e.dot.Counter > k.ctx[dev]:
			d.fail("dot outside causal context")
		case i > 0 && compareDot(k.entries[i-1].dot, e.dot) >= 0:
			d.fail("entries not strictly ascending")
		}
		k.entries = append(k.entries, e)
	}
	return k, d.end()
}
