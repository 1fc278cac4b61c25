package relay

import (
	"context"
	"io"
)

// Register exposes register to the tests (a flooding client).
func (c *Client) Register(ctx context.Context, p PseudonymOf) (io.Closer, error) {
	r, err := c.register(ctx, p)
	return r.st, err
}

// SendPacket exposes sendPacket to the tests.
func (c *Client) SendPacket(dst PseudonymOf, p []byte) error { return c.sendPacket(dst, p) }
