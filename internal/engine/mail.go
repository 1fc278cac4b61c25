package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/mailbox"
)

// MailOptions configures relay mail (internal/mailbox) for a started node.
type MailOptions struct {
	// Dial connects to the relay's mail service.
	Dial func(ctx context.Context) (mailbox.Conn, error)
	// OfflineAfter, Interval, Epoch: see mailbox.Config (0: defaults).
	OfflineAfter, Interval, Epoch time.Duration
}

// StartMail starts relay mail: it records what each peer held when its
// session ended, mails peers offline for a while what they lack, and
// collects this device's mail, until the node closes. Call it once,
// before Start.
func (c *Core) StartMail(opts MailOptions) {
	c.Mail = mailbox.New(mailbox.Config{
		Ident:   c.Ident,
		Replica: c.syncReplica,
		Meta:    c.Store,
		Dial:    opts.Dial,
		Secret:  c.Reg.MeshSecret,
		Peers:   c.Sessions.Peers,
		KeyOf: func(ctx context.Context, id core.DeviceID) (core.PublicKey, error) {
			key, err := c.Trust.LookupKey(ctx, id)
			if err != nil {
				return core.PublicKey{}, err
			}
			if !c.Trust.Trusted(ctx, id, key) {
				return core.PublicKey{}, fmt.Errorf("device %s is not trusted: %w", id.Short(), core.ErrNotFound)
			}
			return key, nil
		},
		Online: func(id core.DeviceID) bool {
			return slices.Contains(c.Peers.Connected(core.DeviceID{}), id)
		},
		Syncs:        func(coll string) bool { return c.Opts.Policy(coll).Syncs() },
		Clock:        core.SchedulerOf(c.Opts.Clock),
		OfflineAfter: opts.OfflineAfter,
		Interval:     opts.Interval,
		Epoch:        opts.Epoch,
		Rand:         c.Random(),
		Log:          c.Log,
	})
	c.Sessions.Ended = c.Mail.SessionEnded
	ctx, cancel := context.WithCancel(context.Background())
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		<-c.closed
		cancel()
	}()
	go func() {
		defer c.wg.Done()
		c.Mail.Run(ctx)
	}()
}
