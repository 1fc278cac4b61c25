package main

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/server"
)

// streamHandlers returns the handlers of the stream kinds the server does
// not serve itself (forwarding is the server's own): relay mail plugs in
// here, on the JetStream of the relay's NATS.
func streamHandlers(ctx context.Context, js jetstream.JetStream, reg prometheus.Registerer, log *slog.Logger) (map[byte]server.StreamHandler, error) {
	// Mail: a replicated stream (R3) on a cluster that can hold one, one
	// replica on the embedded server.
	mail, err := server.NewMail(ctx, js, server.MailConfig{Log: log, Metrics: reg})
	if err != nil {
		return nil, err
	}
	log.Info("relay mail ready", "replicas", mail.Replicas())
	return map[byte]server.StreamHandler{relay.KindMail: mail}, nil
}
