package engine

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/policy"
)

// Selective is the node's side of selective sync (lane h24; design in
// package policy): the device policies of the registry as the planner
// applies them, read again whenever a registry operation commits, which
// decide what travels to each peer as stubs (Stub) and which values this
// device wants (WantValues); a change of this device's own policy that
// makes values wanted backfills the wanted list.
type Selective struct {
	c   *Core
	dev atomic.Pointer[devicePolicies]
}

// devicePolicies is one reading of the registry's sync policies: parsed,
// and raw for change detection.
type devicePolicies struct {
	parsed map[core.DeviceID]policy.Device
	raw    map[core.DeviceID][]byte
}

// device returns id's sync policy (the zero Device when it has none or it
// does not parse).
func (s *Selective) device(id core.DeviceID) policy.Device {
	if p := s.dev.Load(); p != nil {
		return p.parsed[id]
	}
	return policy.Device{}
}

// decide returns how collection travels to peer, its device policy
// applied.
func (s *Selective) decide(peer core.DeviceID, collection string) policy.Decision {
	return s.c.Opts.Planner().DecideDevice(s.device(peer), collection)
}

// Stub reports whether a change of collection travels to peer as a stub.
func (s *Selective) Stub(peer core.DeviceID, collection string, summary bool) bool {
	return s.decide(peer, collection).Carry(summary) == policy.CarryDigest
}

// WantValues reports whether this device wants every value of collection.
func (s *Selective) WantValues(collection string) bool {
	return s.decide(s.c.Ident.DeviceID(), collection).WantsValues()
}

// refresh reads the registry's sync policies and reports whether this
// device's own changed.
func (s *Selective) refresh(ctx context.Context) bool {
	list, err := s.c.Trust.List(ctx)
	if err != nil {
		s.c.Log.Warn("read device policies", "err", err)
		return false
	}
	next := &devicePolicies{parsed: map[core.DeviceID]policy.Device{}, raw: map[core.DeviceID][]byte{}}
	for _, d := range list {
		if len(d.Policy) == 0 {
			continue
		}
		next.raw[d.ID] = d.Policy
		p, err := policy.ParseDevice(d.Policy)
		if err != nil {
			s.c.Log.Warn("device policy ignored", "device", d.ID.Short(), "err", err)
			continue
		}
		next.parsed[d.ID] = p
	}
	prev := s.dev.Swap(next)
	self := s.c.Ident.DeviceID()
	return prev == nil || !bytes.Equal(prev.raw[self], next.raw[self])
}

// start reads the device policies and backfills the wanted list (a host
// Config that now wants values of collections holding stubs), at open.
func (s *Selective) start(ctx context.Context) error {
	s.refresh(ctx)
	_, err := s.c.Rep.Backfill(ctx)
	return err
}

// Committed re-reads the device policies after a commit that carries
// registry operations (replica.Observer); when this device's own changed,
// it backfills the wanted list in the background.
func (s *Selective) Committed(cm replica.Commit) func() {
	touched := false
	for _, r := range cm.Records {
		if r.Collection == devices.Collection {
			touched = true
			break
		}
	}
	if !touched {
		return nil
	}
	return func() {
		if !s.refresh(context.Background()) {
			return
		}
		select {
		case <-s.c.closed:
			return
		default:
		}
		s.c.wg.Add(1)
		go func() {
			defer s.c.wg.Done()
			if n, err := s.c.Rep.Backfill(context.Background()); err != nil {
				s.c.Log.Warn("backfill after a policy change", "err", err)
			} else if n > 0 {
				s.c.Log.Info("policy change: values wanted", "keys", n)
			}
		}()
	}
}

// MarkSummary marks the transaction's pending write of (collection, key)
// as a summary (Tx.PutSummary); it reports whether there was one.
func (b *TxBuf) MarkSummary(collection, key string) bool {
	i, ok := b.index[txKey{collection, key}]
	if ok && !b.ops[i].Deleted {
		b.ops[i].Summary = true
	}
	return ok
}

// Fetch puts keys of collection that this device holds as stubs on its
// wanted list: every session asks its peer for them.
func (c *Core) Fetch(ctx context.Context, collection string, keys []string) error {
	if err := c.Alive(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := core.ValidateKey(collection, k, 0); err != nil {
			return err
		}
	}
	if replica.Internal(collection) {
		return fmt.Errorf("%w: collection names starting with %q are reserved", core.ErrInvalidArgument, replica.InternalPrefix)
	}
	return c.Rep.Want(ctx, collection, keys)
}
