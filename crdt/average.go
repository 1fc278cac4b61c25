package crdt

import (
	"fmt"
	"math"
	"slices"

	"github.com/devicemesh/federation/core"
)

// MaxDimension bounds the vector length of a weighted-average register.
const MaxDimension = 1 << 16

// Contribution is one device's share of a weighted average: the weighted sum
// of every sample it contributed and the total weight, versioned so that a
// merge can tell the newer contribution from the older.
type Contribution struct {
	// Version increases with every change the device makes.
	Version uint64
	// Weight is the total weight contributed (> 0).
	Weight float64
	// Sum is the weighted sum of the samples, one entry per dimension.
	Sum []float64
}

// Average is a weighted-average register over float64 vectors, used for the
// personality model. Each device owns one Contribution and only ever
// replaces it with a higher version; the register's value is the sum of all
// contributions' Sums divided by the sum of their Weights. A merge keeps,
// per device, the contribution with the higher version, so merging is
// convergent however updates are delivered. The zero value is not usable;
// create one with NewAverage.
//
// Encoding: tag 0x06, version 0x01, the dimension as uvarint, a uvarint
// contribution count, then per contribution in ascending device order the
// 32-byte device, the version as uvarint (non-zero), the weight and the
// dimension sum entries, each an IEEE 754 float64 as 8 bytes big-endian.
// Weights must be finite and positive, sums finite.
type Average struct {
	dim int
	c   map[core.DeviceID]Contribution
}

// NewAverage returns an empty register for vectors of length dim. A
// register with dimension 0 adopts the dimension of the first contribution
// it receives, locally or by merge.
func NewAverage(dim int) *Average {
	if dim < 0 || dim > MaxDimension {
		dim = 0
	}
	return &Average{dim: dim, c: make(map[core.DeviceID]Contribution)}
}

// Dim returns the vector length (0 until known).
func (a *Average) Dim() int { return a.dim }

// Add folds sample with the given weight into dev's contribution.
func (a *Average) Add(dev core.DeviceID, sample []float64, weight float64) error {
	if err := a.checkInput(sample, weight); err != nil {
		return fmt.Errorf("average add: %w", err)
	}
	old := a.c[dev]
	next := Contribution{Version: old.Version + 1, Weight: old.Weight + weight, Sum: make([]float64, len(sample))}
	for i, x := range sample {
		var prev float64
		if old.Sum != nil {
			prev = old.Sum[i]
		}
		// The explicit conversion forbids fusing into an FMA, so every
		// architecture computes the same bits.
		next.Sum[i] = prev + float64(weight*x)
	}
	return a.install(dev, next)
}

// Set replaces dev's contribution with the weighted sum and total weight
// given, for a device that recomputes its share from scratch.
func (a *Average) Set(dev core.DeviceID, sum []float64, weight float64) error {
	if err := a.checkInput(sum, weight); err != nil {
		return fmt.Errorf("average set: %w", err)
	}
	next := Contribution{Version: a.c[dev].Version + 1, Weight: weight, Sum: slices.Clone(sum)}
	return a.install(dev, next)
}

func (a *Average) checkInput(v []float64, weight float64) error {
	if !(weight > 0) || math.IsInf(weight, 0) {
		return fmt.Errorf("%w: weight %v must be positive and finite", ErrInvalidArgument, weight)
	}
	if len(v) == 0 || len(v) > MaxDimension {
		return fmt.Errorf("%w: vector length %d outside 1..%d", ErrDimension, len(v), MaxDimension)
	}
	if a.dim != 0 && len(v) != a.dim {
		return fmt.Errorf("%w: vector length %d, register %d", ErrDimension, len(v), a.dim)
	}
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: non-finite component", ErrInvalidArgument)
		}
	}
	return nil
}

func (a *Average) install(dev core.DeviceID, c Contribution) error {
	if c.Version == 0 || math.IsInf(c.Weight, 0) {
		return fmt.Errorf("average: %w", ErrOverflow)
	}
	for _, x := range c.Sum {
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("average: %w", ErrOverflow)
		}
	}
	a.dim = len(c.Sum)
	a.c[dev] = c
	return nil
}

// Contribution returns dev's contribution (zero when it has none). The Sum
// slice is a copy.
func (a *Average) Contribution(dev core.DeviceID) Contribution {
	c := a.c[dev]
	c.Sum = slices.Clone(c.Sum)
	return c
}

// Value returns the weighted mean and the total weight; the mean is nil
// when there are no contributions. Contributions are summed in ascending
// device order so every replica computes the same bits. Components can only
// be infinite if contributions near the float64 range are combined.
func (a *Average) Value() ([]float64, float64) {
	if len(a.c) == 0 {
		return nil, 0
	}
	sum := make([]float64, a.dim)
	var weight float64
	for _, d := range a.devices() {
		c := a.c[d]
		weight += c.Weight
		for i, x := range c.Sum {
			sum[i] += x
		}
	}
	for i := range sum {
		sum[i] /= weight
	}
	return sum, weight
}

// Merge keeps, per device, the contribution with the higher version (equal
// versions with different contents, which a correct device never makes,
// are ordered by their encoded bytes). It returns ErrDimension, leaving a
// unchanged, if both registers have different known dimensions.
func (a *Average) Merge(o *Average) error {
	if a.dim != 0 && o.dim != 0 && a.dim != o.dim {
		return fmt.Errorf("average merge: %w: %d and %d", ErrDimension, a.dim, o.dim)
	}
	if o.dim != 0 {
		a.dim = o.dim
	}
	for d, oc := range o.c {
		if compareContribution(oc, a.c[d]) > 0 {
			oc.Sum = slices.Clone(oc.Sum)
			a.c[d] = oc
		}
	}
	return nil
}

func compareContribution(a, b Contribution) int {
	if a.Version != b.Version {
		if a.Version < b.Version {
			return -1
		}
		return 1
	}
	if c := cmpBits(a.Weight, b.Weight); c != 0 {
		return c
	}
	return slices.CompareFunc(a.Sum, b.Sum, cmpBits)
}

func cmpBits(x, y float64) int {
	bx, by := math.Float64bits(x), math.Float64bits(y)
	switch {
	case bx < by:
		return -1
	case bx > by:
		return 1
	}
	return 0
}

func (a *Average) devices() []core.DeviceID {
	ds := make([]core.DeviceID, 0, len(a.c))
	for d := range a.c {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, core.DeviceID.Compare)
	return ds
}

// Clone returns an independent copy.
func (a *Average) Clone() *Average {
	out := NewAverage(a.dim)
	for d, c := range a.c {
		c.Sum = slices.Clone(c.Sum)
		out.c[d] = c
	}
	return out
}

// Encode returns the canonical encoding.
func (a *Average) Encode() []byte {
	e := newEnc(tagAverage, 4+len(a.c)*(50+8*a.dim))
	e.uvarint(uint64(a.dim))
	ds := a.devices()
	e.uvarint(uint64(len(ds)))
	for _, d := range ds {
		c := a.c[d]
		e.device(d)
		e.uvarint(c.Version)
		e.f64(c.Weight)
		for _, x := range c.Sum {
			e.f64(x)
		}
	}
	return e.b
}

// DecodeAverage decodes an Average encoding. An empty input is an empty
// register of unknown dimension.
func DecodeAverage(b []byte) (*Average, error) {
	if len(b) == 0 {
		return NewAverage(0), nil
	}
	d := newDec(b, tagAverage)
	dim := d.uvarint()
	if d.ok() && dim > MaxDimension {
		d.fail("dimension too large")
	}
	a := NewAverage(int(dim))
	n := d.count(41 + 8*int(dim))
	if d.ok() && n > 0 && dim == 0 {
		d.fail("contributions without dimension")
	}
	var prev core.DeviceID
	for i := 0; i < n && d.ok(); i++ {
		dev := d.device()
		c := Contribution{Version: d.uvarint(), Weight: d.f64(), Sum: make([]float64, dim)}
		for j := range c.Sum {
			c.Sum[j] = d.f64()
		}
		switch {
		case !d.ok():
		case i > 0 && prev.Compare(dev) >= 0:
			d.fail("devices not strictly ascending")
		case c.Version == 0:
			d.fail("zero version")
		case !(c.Weight > 0):
			d.fail("non-positive weight")
		}
		a.c[dev] = c
		prev = dev
	}
	if err := d.end(); err != nil {
		return nil, wrapDecode("average", err)
	}
	return a, nil
}
