package federation

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

func saveClock(ctx context.Context, s Store, ts Timestamp) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(ts))
	if err := s.SetMeta(ctx, metaClock, b[:]); err != nil {
		return fmt.Errorf("save clock: %w", err)
	}
	return nil
}

func loadClock(ctx context.Context, s Store) (Timestamp, error) {
	b, err := s.Meta(ctx, metaClock)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("load clock: %w", core.ErrCorrupt)
	}
	return Timestamp(binary.BigEndian.Uint64(b)), nil
}

func saveDeviceInfo(ctx context.Context, s Store, d DeviceConfig) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("save device info: %w", err)
	}
	if err := s.SetMeta(ctx, metaDevice, b); err != nil {
		return fmt.Errorf("save device info: %w", err)
	}
	return nil
}
