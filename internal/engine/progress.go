package engine

import (
	"context"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/registry"
)

// ProgressBook is the node's view of sync progress across sessions: it
// forwards each session's reports (syncer.ProgressSink) to
// Options.Progress, remembers what each peer held when it last reported
// (so that what waits for a peer that went offline can be counted), and
// reports the offline peers after local writes, at most once per
// syncer.ProgressPeriod.
type ProgressBook struct {
	mu      sync.Mutex
	has     map[core.DeviceID]core.VersionVector
	offline time.Time // the last offline report
}

// progressSink is the sessions' ProgressSink.
type progressSink struct{ c *Core }

func (s progressSink) SyncProgress(peer core.DeviceID, ps []syncer.Progress, peerHas core.VersionVector) {
	b := &s.c.Progress
	b.mu.Lock()
	if b.has == nil {
		b.has = map[core.DeviceID]core.VersionVector{}
	}
	b.has[peer] = peerHas
	b.mu.Unlock()
	if s.c.Opts.Progress != nil {
		s.c.Opts.Progress(ps)
	}
}

// SyncProgress returns the progress of every live session's current
// episode, then what waits for each trusted device that is offline.
func (c *Core) SyncProgress(ctx context.Context) ([]syncer.Progress, error) {
	var out []syncer.Progress
	live := map[core.DeviceID]bool{c.Ident.DeviceID(): true}
	for _, m := range c.Peers.Members() {
		ps, ok := m.(*PeerSession)
		if !ok {
			continue
		}
		live[ps.Peer()] = true
		out = append(out, ps.Progress()...)
	}
	off, err := c.offline(ctx, live)
	if err != nil {
		return out, err
	}
	return append(out, off...), nil
}

// offline counts, for every trusted device without a session, the changes
// this device holds beyond what the peer held when it last reported: all
// of them when it has not reported since the node opened (an upper bound).
func (c *Core) offline(ctx context.Context, live map[core.DeviceID]bool) ([]syncer.Progress, error) {
	devs, err := c.Trust.List(ctx)
	if err != nil {
		return nil, err
	}
	var vv core.VersionVector
	var out []syncer.Progress
	for _, d := range devs {
		if live[d.ID] || (d.Trust != registry.TrustTrusted && d.Trust != registry.TrustOwner) {
			continue
		}
		if vv == nil {
			if vv, err = c.Rep.VersionVector(ctx); err != nil {
				return nil, err
			}
		}
		c.Progress.mu.Lock()
		has := c.Progress.has[d.ID]
		c.Progress.mu.Unlock()
		var n uint64
		for o, seq := range vv {
			if seq > has[o] {
				n += seq - has[o]
			}
		}
		out = append(out, syncer.Progress{Peer: d.ID, Waiting: n, Reason: syncer.WaitOffline})
	}
	return out, nil
}

// Committed reports the offline peers after a local write (replica.Observer),
// at most once per syncer.ProgressPeriod, once the write lock is released.
func (b *ProgressBook) committed(c *Core, commit replica.Commit) func() {
	if commit.Source != replica.SourceLocal || c.Opts.Progress == nil {
		return nil
	}
	now := c.Opts.Clock.Now()
	b.mu.Lock()
	due := b.offline.IsZero() || now.Sub(b.offline) >= syncer.ProgressPeriod
	if due {
		b.offline = now
	}
	b.mu.Unlock()
	if !due {
		return nil
	}
	return func() {
		live := map[core.DeviceID]bool{c.Ident.DeviceID(): true}
		for _, m := range c.Peers.Members() {
			if ps, ok := m.(*PeerSession); ok {
				live[ps.Peer()] = true
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if off, err := c.offline(ctx, live); err == nil && len(off) > 0 {
			c.Opts.Progress(off)
		}
	}
}

// offlineObserver is the ProgressBook's commit observer.
type offlineObserver struct{ c *Core }

func (o offlineObserver) Committed(commit replica.Commit) func() {
	return o.c.Progress.committed(o.c, commit)
}
