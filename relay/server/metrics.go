package server

import "github.com/prometheus/client_golang/prometheus"

// metrics are the relay's Prometheus series (prefix fedrelay_).
type metrics struct {
	conns      prometheus.Gauge
	authFail   prometheus.Counter
	streams    *prometheus.CounterVec
	packetsIn  prometheus.Counter
	bytesIn    prometheus.Counter
	packetsOut prometheus.Counter
	bytesOut   prometheus.Counter
	forwarded  *prometheus.CounterVec
	fromNATS   prometheus.Counter
	dropped    *prometheus.CounterVec

	// Children of forwarded looked up once: a lookup per packet costs
	// a hash of the label.
	fwdLocal, fwdNATS prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, _ *Server) *metrics {
	m := &metrics{
		conns:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "fedrelay_connections", Help: "Authenticated client connections."}),
		authFail:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_auth_failures_total", Help: "Connections refused at authentication."}),
		streams:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedrelay_streams_total", Help: "Streams opened, by kind byte."}, []string{"kind"}),
		packetsIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_packets_received_total", Help: "Datagrams received from clients."}),
		bytesIn:    prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_bytes_received_total", Help: "Datagram bytes received from clients."}),
		packetsOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_packets_sent_total", Help: "Datagrams sent to clients."}),
		bytesOut:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_bytes_sent_total", Help: "Datagram bytes sent to clients."}),
		forwarded:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedrelay_packets_forwarded_total", Help: "Packets forwarded, by path (local, nats)."}, []string{"path"}),
		fromNATS:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_packets_from_nats_total", Help: "Packets received from other relay instances."}),
		dropped:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedrelay_packets_dropped_total", Help: "Packets dropped, by reason."}, []string{"reason"}),
	}
	m.fwdLocal, m.fwdNATS = m.forwarded.WithLabelValues("local"), m.forwarded.WithLabelValues("nats")
	if reg != nil {
		reg.MustRegister(m.conns, m.authFail, m.streams, m.packetsIn, m.bytesIn, m.packetsOut, m.bytesOut, m.forwarded, m.fromNATS, m.dropped)
	}
	return m
}
