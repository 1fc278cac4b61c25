package crdt

import (
	"bytes"
	"slices"

	"github.com/devicemesh/federation/core"
)

// LWW is a last-writer-wins register: of all the values ever assigned, it
// holds the one with the highest (Time, Device) stamp. Two assignments with
// the same stamp (which a correct device never makes) are ordered by their
// value bytes so the outcome stays deterministic. The zero value is an empty
// register that every assignment beats.
//
// Encoding: tag 0x01, version 0x01, Time as 8 bytes big-endian, Device as
// 32 bytes, then the value bytes to the end of the encoding.
type LWW struct {
	// Value is the winning value. An empty and a nil value are the same.
	Value []byte
	// Time is the hybrid logical clock stamp of the winning assignment.
	Time core.Timestamp
	// Device is the device that made the winning assignment.
	Device core.DeviceID
}

// Set assigns value at (ts, dev) if that stamp beats the current one; an
// older assignment is ignored, exactly as if it had been merged in.
func (r *LWW) Set(value []byte, ts core.Timestamp, dev core.DeviceID) {
	r.Merge(&LWW{Value: value, Time: ts, Device: dev})
}

// Merge folds o into r, keeping the winner. It does not retain o's slices.
func (r *LWW) Merge(o *LWW) {
	if CompareLWW(*o, *r) > 0 {
		r.Value = slices.Clone(o.Value)
		r.Time = o.Time
		r.Device = o.Device
	}
}

// CompareLWW orders two register states by Time, then Device, then value
// bytes; the greater one wins a merge.
func CompareLWW(a, b LWW) int {
	switch {
	case a.Time != b.Time:
		if a.Time < b.Time {
			return -1
		}
		return 1
	case a.Device != b.Device:
		return a.Device.Compare(b.Device)
	}
	return bytes.Compare(a.Value, b.Value)
}

// Clone returns an independent copy.
func (r *LWW) Clone() *LWW {
	return &LWW{Value: slices.Clone(r.Value), Time: r.Time, Device: r.Device}
}

// Encode returns the canonical encoding.
func (r *LWW) Encode() []byte {
	e := newEnc(tagLWW, 40+len(r.Value))
	e.timestamp(r.Time)
	e.device(r.Device)
	e.b = append(e.b, r.Value...)
	return e.b
}

// DecodeLWW decodes an LWW encoding. An empty input is the empty register.
func DecodeLWW(b []byte) (*LWW, error) {
	if len(b) == 0 {
		return &LWW{}, nil
	}
	d := newDec(b, tagLWW)
	r := &LWW{Time: d.timestamp(), Device: d.device()}
	if !d.ok() {
		return nil, wrapDecode("lww", d.err)
	}
	if len(d.b) > 0 {
		r.Value = slices.Clone(d.b)
	}
	return r, nil
}
