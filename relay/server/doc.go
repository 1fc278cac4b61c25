// Package server is fedrelay's server side: it accepts client connections
// over QUIC and over TLS on TCP, authenticates their credentials (see
// package relay), dispatches every stream to the StreamHandler registered
// for its kind byte, and forwards datagrams between clients, locally or
// through NATS between relay instances. It imports the NATS client; the
// daemon cmd/fedrelay embeds the NATS server.
package server
