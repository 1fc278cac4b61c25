package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Device is one peer's sync policy: how the collections travel to that
// device when it differs from the table (a phone that takes no media,
// say, or takes conversations only periodically). The device registry
// carries it as opaque bytes (Node.SetDevicePolicy); ParseDevice reads its
// JSON form:
//
//	{"collections": {"media": {"mode": "local-only"},
//	                 "conversations": {"priority": "high", "mode": "periodic"}}}
type Device struct {
	// Collections overrides per collection name.
	Collections map[string]Override `json:"collections,omitempty"`
}

// Override changes part of a collection's policy for one peer; nil fields
// keep the table's value.
type Override struct {
	// Priority replaces the collection's priority towards this peer.
	Priority *core.Priority `json:"priority,omitempty"`
	// Mode replaces the collection's mode towards this peer;
	// core.ModeLocalOnly keeps the collection from this peer.
	Mode *core.Mode `json:"mode,omitempty"`
}

// ParseDevice decodes a device policy's JSON form. Empty input is the zero
// Device (no overrides). Unknown fields, priorities and modes are errors
// wrapping core.ErrInvalidArgument, so that a policy written for a newer
// version is refused rather than half obeyed.
func ParseDevice(b []byte) (Device, error) {
	var d Device
	if len(bytes.TrimSpace(b)) == 0 {
		return d, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return Device{}, fmt.Errorf("%w: device policy: %v", core.ErrInvalidArgument, err)
	}
	if dec.More() {
		return Device{}, fmt.Errorf("%w: device policy: trailing data", core.ErrInvalidArgument)
	}
	return d, nil
}

// Marshal encodes the device policy in the JSON form ParseDevice reads.
func (d Device) Marshal() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("device policy: %w", err)
	}
	return b, nil
}
