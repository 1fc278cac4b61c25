package crdt

import (
	"bytes"
	"errors"
	"testing"

	"github.com/devicemesh/federation/internal/allocbound"
)

// perByte bounds what every decoder of this package may allocate per input
// byte, plus allocbound.Slack. The costliest shape is a dot kernel's entry
// (ORSet, MVRegister): three bytes on the wire, a 64-byte dotEntry in
// memory.
const perByte = 32

// fuzzDecoder checks a decoder against arbitrary bytes: it must not panic,
// nor allocate more than perByte per input byte (plus allocbound.Slack),
// every error must wrap ErrMalformed, and accepted input must be canonical
// (re-encoding gives the same bytes) and merge lawfully with itself and
// with a sample state.
func fuzzDecoder[T any](f *testing.F, m model[T], sample T) {
	f.Add(m.encode(sample))
	f.Add(m.encode(m.empty()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var v T
		var err error
		allocbound.Check(t, in, perByte, allocbound.Slack, func() { v, err = m.decode(in) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(in) > 0 && !bytes.Equal(m.encode(v), in) {
			t.Fatalf("accepted non-canonical input %x (re-encodes to %x)", in, m.encode(v))
		}
		self := m.clone(v)
		if err := m.merge(self, v); err != nil || !bytes.Equal(m.encode(self), m.encode(v)) {
			t.Fatalf("merge with itself changed the state (err %v)", err)
		}
		a, b := m.clone(v), m.clone(sample)
		errA, errB := m.merge(a, sample), m.merge(b, v)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("merge errors differ by order: %v / %v", errA, errB)
		}
		if errA == nil && !bytes.Equal(m.encode(a), m.encode(b)) {
			t.Fatalf("merge with sample not commutative")
		}
	})
}

func FuzzDecodeLWW(f *testing.F) {
	s := &LWW{}
	s.Set([]byte("value"), 42, dev(1))
	fuzzDecoder(f, lwwModel(), s)
}

func FuzzDecodeORSet(f *testing.F) {
	s := NewORSet()
	s.Add(dev(1), []byte("a"))
	s.Add(dev(2), []byte("b"))
	s.Remove([]byte("a"))
	fuzzDecoder(f, orsetModel(), s)
}

func FuzzDecodeMVRegister(f *testing.F) {
	a, b := NewMVRegister(), NewMVRegister()
	a.Set(dev(1), []byte("a"))
	b.Set(dev(2), []byte("b"))
	a.Merge(b)
	fuzzDecoder(f, mvModel(), a)
}

func FuzzDecodeGSet(f *testing.F) {
	s := &GSet{}
	s.Add([]byte("event-1"))
	s.Add([]byte("event-2"))
	fuzzDecoder(f, gsetModel(), s)
}

func FuzzDecodeGCounter(f *testing.F) {
	s := NewGCounter()
	_ = s.Inc(dev(1), 3)
	_ = s.Inc(dev(2), 300)
	fuzzDecoder(f, gcounterModel(), s)
}

func FuzzDecodePNCounter(f *testing.F) {
	s := NewPNCounter()
	_ = s.Inc(dev(1), 3)
	_ = s.Dec(dev(2), 300)
	fuzzDecoder(f, pncounterModel(), s)
}

func FuzzDecodeAverage(f *testing.F) {
	s := NewAverage(3)
	_ = s.Add(dev(1), []float64{0.5, -1, 2}, 1.5)
	_ = s.Add(dev(2), []float64{1, 1, 1}, 1)
	fuzzDecoder(f, averageModel(), s)
}

func FuzzDecodeLog(f *testing.F) {
	s := &Log{}
	_ = s.Append(Message{ID: "m1", Time: 10, Device: dev(1), Body: []byte("hello")})
	_ = s.Append(Message{ID: "m2", Time: 11, Device: dev(2), Body: []byte("there")})
	_ = s.Edit("m1", []byte("hello!"), 12, dev(2))
	_ = s.Append(Message{ID: "m3", Time: 13, Device: dev(1), Body: []byte("bye")})
	_ = s.Delete("m3", 14, dev(1))
	fuzzDecoder(f, logModel(), s)
}
