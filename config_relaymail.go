package federation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/devicemesh/federation/internal/engine"
	"github.com/devicemesh/federation/internal/mailbox"
	"github.com/devicemesh/federation/relay"
)

// RelayMailConfig configures relay mail (RelayConfig.Mail): with a relay
// set, the node leaves sealed envelopes at the relay for trusted devices
// that have been offline for OfflineAfter, holding the changes they lack
// (what they held when their last session ended, as far as this device
// knows), and collects the envelopes left for it at Start and every
// Interval. Two devices that are never online at the same time still
// converge. Envelopes are encrypted to the recipient device, signed by the
// sender, padded to a few size buckets, and left in mailboxes named by a
// pseudonym derived from the mesh secret that changes every Epoch: see
// package relay for what the relay can and cannot see.
type RelayMailConfig struct {
	// Disabled turns relay mail off (forwarding through the relay stays).
	Disabled bool
	// OfflineAfter is how long a peer must be offline before it is mailed.
	// 0: one minute.
	OfflineAfter time.Duration
	// Interval separates the mail rounds (collect, then send). 0: one
	// minute.
	Interval time.Duration
	// Epoch is how long a mailbox pseudonym lasts. 0: relay.MailEpoch
	// (a day). Every device of a mesh must use the same.
	Epoch time.Duration
}

// startMail starts relay mail when a relay is configured.
func (n *Node) startMail() {
	rc := n.cfg.Relay
	if rc.Addr == "" || rc.Mail.Disabled || n.c.Mail != nil {
		return
	}
	n.c.StartMail(engine.MailOptions{
		Dial:         n.dialMail,
		OfflineAfter: rc.Mail.OfflineAfter,
		Interval:     rc.Mail.Interval,
		Epoch:        rc.Mail.Epoch,
	})
}

// dialMail connects to the relay under the current mesh secret's
// credential and opens a mail stream.
func (n *Node) dialMail(ctx context.Context) (mailbox.Conn, error) {
	sec, err := n.MeshSecret()
	if err != nil {
		return nil, err
	}
	rc := n.cfg.Relay
	c, err := relay.Dial(ctx, relay.ClientConfig{
		Addr: rc.Addr, TLS: rc.TLS, Logger: n.c.Log,
		Credential: relay.NewCredential(sec.Key, sec.Generation),
	})
	if err != nil {
		return nil, fmt.Errorf("relay mail: %w", err)
	}
	s, err := c.OpenStream(ctx, relay.KindMail)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("relay mail: %w", err)
	}
	return &mailConn{MailConn: relay.NewMailConn(s), c: c}, nil
}

// mailConn is a mail stream and the connection it runs on.
type mailConn struct {
	*relay.MailConn
	c *relay.Client
}

func (m *mailConn) Close() error { return errors.Join(m.MailConn.Close(), m.c.Close()) }

// RelayMailStats counts this node's relay mail since it opened.
type RelayMailStats struct {
	// Sent counts envelopes deposited for offline devices.
	Sent uint64
	// Received counts envelopes collected (again each round until
	// acknowledged); Applied the transactions applied from them.
	Received, Applied uint64
	// Refused counts envelopes (or transactions) refused: not opening, not
	// signed by a trusted device, misaddressed or malformed.
	Refused uint64
	// Acked counts envelopes the relay deleted on this node's ack.
	Acked uint64
	// Pending is the envelopes left at the relay after the last round
	// because what they hold cannot be applied yet.
	Pending uint64
}

// RelayMail returns the node's relay mail counters (zero without relay
// mail).
func (n *Node) RelayMail() RelayMailStats {
	if n.c.Mail == nil {
		return RelayMailStats{}
	}
	s := n.c.Mail.Stats()
	return RelayMailStats{Sent: s.Sent, Received: s.Received, Applied: s.Applied, Refused: s.Refused, Acked: s.Acked, Pending: s.Pending}
}
