package crdt

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/varint"
)

// Type tags: the first byte of every encoding. The second byte is the format
// version, currently formatVersion.
const (
	tagLWW       byte = 0x01
	tagMV        byte = 0x02
	tagORSet     byte = 0x03
	tagGCounter  byte = 0x04
	tagPNCounter byte = 0x05
	tagAverage   byte = 0x06
	tagLog       byte = 0x07
	tagGSet      byte = 0x08

	formatVersion byte = 1
)

// enc appends the primitive encodings shared by every type.
type enc struct{ b []byte }

func newEnc(tag byte, sizeHint int) *enc {
	e := &enc{b: make([]byte, 0, 2+sizeHint)}
	e.b = append(e.b, tag, formatVersion)
	return e
}

func (e *enc) byte1(v byte)               { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64)           { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) u64(v uint64)               { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) f64(v float64)              { e.u64(math.Float64bits(v)) }
func (e *enc) device(d core.DeviceID)     { e.b = append(e.b, d[:]...) }
func (e *enc) bytes(p []byte)             { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)               { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) timestamp(t core.Timestamp) { e.u64(uint64(t)) }
func (e *enc) devices(ds []core.DeviceID) {
	e.uvarint(uint64(len(ds)))
	for _, d := range ds {
		e.device(d)
	}
}

// dec reads primitives, remembering the first error so that callers check
// once per structure. Every read is bounds-checked against the remaining
// input, and counts are bounded by the bytes left, so a hostile length can
// neither panic nor allocate more than the input justifies.
type dec struct {
	b     []byte
	total int // length of the whole input, for pos
	err   error
}

func newDec(b []byte, tag byte) *dec {
	d := &dec{b: b, total: len(b)}
	if len(b) < 2 {
		d.fail("truncated header")
		return d
	}
	if b[0] != tag {
		d.fail(fmt.Sprintf("type tag 0x%02x, want 0x%02x", b[0], tag))
		return d
	}
	if b[1] != formatVersion {
		d.fail(fmt.Sprintf("format version %d, want %d", b[1], formatVersion))
		return d
	}
	d.b = b[2:]
	return d
}

func (d *dec) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, msg)
	}
}

func (d *dec) ok() bool { return d.err == nil }

// pos returns the offset of the next unread byte in the whole input.
func (d *dec) pos() int { return d.total - len(d.b) }

func (d *dec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) byte1() byte {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	// Over-long (non-minimal) varints are refused too, so every value has
	// one encoding.
	v, n := varint.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint (truncated, overflowing or not minimal)")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks that at least minSize bytes per
// element remain, bounding any allocation by the input size.
func (d *dec) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(len(d.b)/minSize) {
		d.fail("count exceeds input")
		return 0
	}
	return int(n)
}

func (d *dec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *dec) f64() float64 {
	v := math.Float64frombits(d.u64())
	if d.err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		d.fail("non-finite number")
	}
	return v
}

func (d *dec) timestamp() core.Timestamp { return core.Timestamp(d.u64()) }

func (d *dec) device() core.DeviceID {
	var id core.DeviceID
	copy(id[:], d.take(len(id)))
	return id
}

// bytes returns a copy of a length-prefixed byte string, so decoded values
// never alias the caller's buffer.
func (d *dec) bytes() []byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	return slices.Clone(d.take(n))
}

// devices reads a device table: a count and strictly ascending ids.
func (d *dec) devices() []core.DeviceID {
	n := d.count(len(core.DeviceID{}))
	ds := make([]core.DeviceID, 0, n)
	for i := 0; i < n && d.ok(); i++ {
		id := d.device()
		if i > 0 && ds[i-1].Compare(id) >= 0 {
			d.fail("device table not strictly ascending")
		}
		ds = append(ds, id)
	}
	return ds
}

// index reads a device-table index.
func (d *dec) index(n int) int {
	i := d.uvarint()
	if d.err == nil && i >= uint64(n) {
		d.fail("device index out of range")
		return 0
	}
	return int(i)
}

// end checks that the whole input was consumed.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// sortedDevices returns the distinct devices of ids, ascending. ids is
// consumed (reordered in place).
func sortedDevices(ids []core.DeviceID) []core.DeviceID {
	slices.SortFunc(ids, core.DeviceID.Compare)
	return slices.Compact(ids)
}

// deviceIndex returns the position of id in the sorted table ds.
func deviceIndex(ds []core.DeviceID, id core.DeviceID) int {
	i, _ := slices.BinarySearchFunc(ds, id, core.DeviceID.Compare)
	return i
}
