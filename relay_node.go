package federation

import (
	"context"
	"errors"
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/transport"
)

// pathAdder is a transport that can run sessions over a relay path
// (*transport.QUIC).
type pathAdder interface {
	AddPath(p transport.Path) error
}

// withRelay wraps build so that, with Config.Relay set, the transport it
// builds also reaches devices through the relay: a relay.Forwarder is
// added as a path, and the redial loop learns every device's relay address
// from it (peers.Manager dials it when no direct path answers in time).
func (n *Node) withRelay(build func(context.Context) (Transport, error)) func(context.Context) (Transport, error) {
	rc := n.cfg.Relay
	if rc.Addr == "" {
		return build
	}
	return func(ctx context.Context) (Transport, error) {
		tr, err := build(ctx)
		if err != nil {
			return nil, err
		}
		pa, ok := tr.(pathAdder)
		if !ok {
			_ = tr.Close()
			return nil, fmt.Errorf("%w: a relay needs the QUIC transport, not %T", core.ErrInvalidConfig, tr)
		}
		sched, _ := n.cfg.Clock.(core.Scheduler)
		fwd, err := relay.NewForwarder(relay.ForwarderConfig{
			Relay:  relay.ClientConfig{Addr: rc.Addr, TLS: rc.TLS, Logger: n.c.Log},
			Self:   n.c.Ident.DeviceID(),
			Secret: n.MeshSecret,
			Clock:  sched,
		})
		if err != nil {
			_ = tr.Close()
			return nil, err
		}
		if err := pa.AddPath(fwd); err != nil {
			_ = tr.Close()
			_ = fwd.Close()
			return nil, err
		}
		n.c.Peers.AddSource(fwd)
		return &relayedTransport{Transport: tr, fwd: fwd}, nil
	}
}

// relayedTransport closes the relay attachment after the transport.
type relayedTransport struct {
	Transport
	fwd *relay.Forwarder
}

func (t *relayedTransport) Close() error {
	return errors.Join(t.Transport.Close(), t.fwd.Close())
}
