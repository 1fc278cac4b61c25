package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/devicemesh/federation/relay/server"
)

// streamHandlers returns the handlers of the stream kinds the server does
// not serve itself (forwarding is the server's own): relay mail plugs in
// here, on the JetStream of the relay's NATS.
func streamHandlers(_ context.Context, _ jetstream.JetStream, _ prometheus.Registerer, _ *slog.Logger) (map[byte]server.StreamHandler, error) {
	return map[byte]server.StreamHandler{}, nil
}
