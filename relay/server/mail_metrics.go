package server

import "github.com/prometheus/client_golang/prometheus"

// mailMetrics are relay mail's Prometheus series (prefix fedrelay_mail_).
type mailMetrics struct {
	deposited prometheus.Counter
	bytes     prometheus.Counter
	refused   *prometheus.CounterVec
	collected prometheus.Counter
	acked     prometheus.Counter
}

func newMailMetrics(reg prometheus.Registerer) *mailMetrics {
	m := &mailMetrics{
		deposited: prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_mail_deposited_total", Help: "Envelopes stored."}),
		bytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_mail_deposited_bytes_total", Help: "Bytes of the envelopes stored."}),
		refused:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fedrelay_mail_refused_total", Help: "Mail requests refused, by reason (full, quota, size, malformed, unavailable)."}, []string{"reason"}),
		collected: prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_mail_collected_total", Help: "Envelopes sent to collecting clients."}),
		acked:     prometheus.NewCounter(prometheus.CounterOpts{Name: "fedrelay_mail_acked_total", Help: "Envelopes deleted on acknowledgement."}),
	}
	if reg != nil {
		reg.MustRegister(m.deposited, m.bytes, m.refused, m.collected, m.acked)
	}
	return m
}
