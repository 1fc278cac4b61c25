package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/policy"
)

// DevicePolicies keeps the node's policy planner in step with the device
// registry: each device's sync_policy (set by any device of the mesh
// with Node.SetDevicePolicy, a signed, replicated registry operation) is
// parsed (policy.ParseDevice) into the overrides of the table this
// device's senders plan with towards that device. The table is rebuilt
// whole by every commit that touches the registry and swapped in
// atomically: a sender reads one consistent table per question. A policy
// that does not parse is ignored (the table's own policies apply to that
// device) with a warning: a newer version's policy is refused rather than
// half obeyed.
type DevicePolicies struct {
	base  func() *policy.Planner // the host's table, without device overrides
	trust *devices.Trust
	log   *slog.Logger

	mu  sync.Mutex // serialises reloads
	cur atomic.Pointer[policy.Planner]
}

// NewDevicePolicies returns the planner source over base's table, with
// the overrides the registry holds now.
func NewDevicePolicies(ctx context.Context, base func() *policy.Planner, trust *devices.Trust, log *slog.Logger) *DevicePolicies {
	d := &DevicePolicies{base: base, trust: trust, log: log}
	d.Reload(ctx)
	return d
}

// Planner returns the current planner (device overrides applied).
func (d *DevicePolicies) Planner() *policy.Planner {
	if p := d.cur.Load(); p != nil {
		return p
	}
	return d.base()
}

// Reload rebuilds the planner from the registry's current device list.
func (d *DevicePolicies) Reload(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	devs, err := d.trust.List(ctx)
	if err != nil {
		d.log.Warn("device policies: list registry", "err", err)
		return
	}
	over := map[core.DeviceID]policy.Device{}
	for _, dev := range devs {
		if len(dev.Policy) == 0 {
			continue
		}
		p, err := policy.ParseDevice(dev.Policy)
		if err != nil {
			d.log.Warn("device sync policy ignored", "peer", dev.ID.Short(), "err", err)
			continue
		}
		over[dev.ID] = p
	}
	d.cur.Store(policy.NewPlanner(d.base().Table().WithDevices(over)))
}

// Committed reloads the planner after a commit that touches the device
// registry (replica.Observer), under the write lock, after the registry
// folded the commit into its table: the next write, and every sender
// after it, plans with the new policies.
func (d *DevicePolicies) Committed(c replica.Commit) func() {
	for _, r := range c.Records {
		if r.Collection == devices.Collection {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d.Reload(ctx)
			return nil
		}
	}
	return nil
}

// Interval returns the batching period of coll towards peer, 0 when it is
// not periodic (syncer.Periodic).
func (p syncerPolicy) Interval(peer core.DeviceID, coll string) time.Duration {
	d := p.c.Policies.Planner().Decide(peer, coll)
	if d.Mode != core.ModePeriodic {
		return 0
	}
	return d.Interval
}
