package engine

import (
	"context"

	"github.com/devicemesh/federation/core"
)

// acceptNotice hands a notice that a peer's refusal carried to the
// registry, which commits it when it is a valid revocation of this device
// (peers.Config.Notice).
func (c *Core) acceptNotice(peer core.DeviceID, notice []byte) {
	if c.Reg == nil || c.Alive() != nil {
		return
	}
	if _, err := c.Reg.AcceptNotice(context.Background(), peer, notice); err != nil {
		c.Log.Debug("refusal notice not taken", "peer", peer.Short(), "err", err)
	}
}

// selfRevoked runs once this device's registry says it was revoked: it
// stops dialling every device (they refuse it anyway) and tells the host
// (Options.SelfRevoked).
func (c *Core) selfRevoked(by core.DeviceID) {
	self := c.Ident.DeviceID()
	if devs, err := c.Trust.List(context.Background()); err == nil {
		for _, d := range devs {
			if d.ID != self {
				c.Peers.CutOff(d.ID)
			}
		}
	}
	if c.Opts.SelfRevoked != nil {
		c.Opts.SelfRevoked(by)
	}
}
