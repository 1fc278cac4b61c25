package crdt

import (
	"fmt"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/allocbound"
)

// TestDecodersBoundedByInput: the costliest well-formed encodings of each
// type (many tiny elements, entries, devices or messages) decode within
// perByte bytes allocated per input byte.
func TestDecodersBoundedByInput(t *testing.T) {
	many := func(i int) core.DeviceID { return core.DeviceID{byte(i), byte(i >> 8), 7} }
	orset, mv, gset, gc, avg, lg := NewORSet(), NewMVRegister(), &GSet{}, NewGCounter(), NewAverage(1), &Log{}
	for i := 0; i < 2000; i++ {
		orset.Add(dev(1), []byte{byte(i), byte(i >> 8)})
		gset.Add([]byte{byte(i), byte(i >> 8)})
		_ = gc.Inc(many(i), 1)
		_ = avg.Add(many(i), []float64{1}, 1)
		_ = lg.Append(Message{ID: fmt.Sprint(i), Time: core.Timestamp(i + 1), Device: dev(1)})
	}
	for i := 0; i < 300; i++ {
		o := NewMVRegister()
		o.Set(many(i), nil)
		mv.Merge(o)
	}
	for name, c := range map[string]struct {
		b      []byte
		decode func([]byte) error
	}{
		"orset":      {orset.Encode(), func(b []byte) error { _, err := DecodeORSet(b); return err }},
		"mvregister": {mv.Encode(), func(b []byte) error { _, err := DecodeMVRegister(b); return err }},
		"gset":       {gset.Encode(), func(b []byte) error { _, err := DecodeGSet(b); return err }},
		"gcounter":   {gc.Encode(), func(b []byte) error { _, err := DecodeGCounter(b); return err }},
		"average":    {avg.Encode(), func(b []byte) error { _, err := DecodeAverage(b); return err }},
		"log":        {lg.Encode(), func(b []byte) error { _, err := DecodeLog(b); return err }},
	} {
		var err error
		got := allocbound.Bytes(func() { err = c.decode(c.b) })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s: %d bytes, %d allocated (%.1f per byte)", name, len(c.b), got, float64(got)/float64(len(c.b)))
		allocbound.Check(t, c.b, perByte, allocbound.Slack, func() { _ = c.decode(c.b) })
	}
}
