package replica

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// Metadata keys this package keeps in the store.
const (
	metaClock  = "node.hlc.last"
	metaDevice = "node.device"
)

// SaveClock persists the clock's last reading, so that the next open never
// issues a timestamp at or below it.
func SaveClock(ctx context.Context, s core.Store, ts core.Timestamp) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ts))
	if err := s.SetMeta(ctx, metaClock, b[:]); err != nil {
		return fmt.Errorf("save clock: %w", err)
	}
	return nil
}

// LoadClock reads the reading SaveClock persisted.
func LoadClock(ctx context.Context, s core.Store) (core.Timestamp, error) {
	b, err := s.Meta(ctx, metaClock)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("load clock: %w", core.ErrCorrupt)
	}
	return core.Timestamp(binary.BigEndian.Uint64(b)), nil
}

// SaveDeviceInfo persists the host's description of this device (d is
// marshalled as JSON).
func SaveDeviceInfo(ctx context.Context, s core.Store, d any) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("save device info: %w", err)
	}
	if err := s.SetMeta(ctx, metaDevice, b); err != nil {
		return fmt.Errorf("save device info: %w", err)
	}
	return nil
}
