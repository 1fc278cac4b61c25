package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/devicemesh/federation/api/federation/v1"
)

// Collector exports a Service's Stats to Prometheus, read at each scrape.
type Collector struct {
	s *Service

	records, tombstones, changes, subscribers, peers *prometheus.Desc
	dropped, drift, unsettled, tampered              *prometheus.Desc
	peerBytes, peerChanges, peerConflicts, peerRep   *prometheus.Desc
}

// NewCollector returns a collector of s's Stats.
func NewCollector(s *Service) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fednode_"+name, help, labels, nil)
	}
	return &Collector{s: s,
		records:       d("records", "Live records in the store."),
		tombstones:    d("tombstones", "Deleted records still kept."),
		changes:       d("changelog_entries", "Changelog entries not yet truncated."),
		subscribers:   d("subscribers", "Event subscriptions open."),
		peers:         d("peers", "Live sync sessions."),
		dropped:       d("events_dropped_total", "Events lost to slow subscribers."),
		drift:         d("clock_drift_total", "Received batches beyond the clock drift bound."),
		unsettled:     d("repairs_unsettled_total", "Merkle repairs that did not settle."),
		tampered:      d("audit_tampered_total", "Rewritten or truncated audit histories detected."),
		peerBytes:     d("peer_bytes_total", "Bytes exchanged with a peer.", "peer", "direction"),
		peerChanges:   d("peer_changes_total", "Changes exchanged with a peer.", "peer", "direction"),
		peerConflicts: d("peer_conflicts_total", "Conflicts met while merging a peer's changes.", "peer"),
		peerRep:       d("peer_repairs_total", "Merkle repairs driven with a peer.", "peer"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.records, c.tombstones, c.changes, c.subscribers, c.peers, c.dropped,
		c.drift, c.unsettled, c.tampered, c.peerBytes, c.peerChanges, c.peerConflicts, c.peerRep} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.s.Stats(ctx, &v1.StatsRequest{})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.records, err)
		return
	}
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(c.records, float64(st.Records))
	g(c.tombstones, float64(st.Tombstones))
	g(c.changes, float64(st.Changes))
	g(c.subscribers, float64(st.Subscribers))
	g(c.peers, float64(len(st.Peers)))
	k(c.dropped, st.EventsDropped)
	k(c.drift, st.ClockDrift)
	k(c.unsettled, st.RepairsUnsettled)
	k(c.tampered, st.AuditTampered)
	for _, p := range st.Peers {
		k(c.peerBytes, p.BytesSent, p.Device, "sent")
		k(c.peerBytes, p.BytesRecv, p.Device, "recv")
		k(c.peerChanges, p.ChangesSent, p.Device, "sent")
		k(c.peerChanges, p.ChangesRecv, p.Device, "recv")
		k(c.peerConflicts, p.Conflicts, p.Device)
		k(c.peerRep, p.Repairs, p.Device)
	}
}
