package fedprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/devicemesh/federation"
)

// Options configure a Collector.
type Options struct {
	// Namespace prefixes every metric name ("federation" when empty):
	// federation_records, federation_peer_bytes_total, ...
	Namespace string
	// ConstLabels are added to every metric (a host running several nodes
	// in one process tells them apart with one, say {"node": "phone"}).
	ConstLabels prometheus.Labels
	// Timeout bounds the node reads of one scrape (Node.Stats waits for a
	// commit in progress). 0 means 5 seconds.
	Timeout time.Duration
}

// Collector is a prometheus.Collector over one federation.Node; see the
// package doc for its metrics. It is safe for concurrent scrapes.
type Collector struct {
	node    *federation.Node
	timeout time.Duration

	records, tombstones, changes, subscribers, peers   *prometheus.Desc
	dropped, drift, unsettled, tampered, refusals      *prometheus.Desc
	conflicts, wanted, ready                           *prometheus.Desc
	mailSent, mailRecv, mailApplied, mailRefused       *prometheus.Desc
	mailAcked, mailPending                             *prometheus.Desc
	blobChunks, blobChunkBytes, blobRejected, blobWire *prometheus.Desc

	connected, pChanges, pBytes, pFrames, pRepairRecords *prometheus.Desc
	pConflicts, pRepairs, pEchoes, pRedundant            *prometheus.Desc
	pStubs, pWants, pValues, pRefused                    *prometheus.Desc

	recDone, recTotal, bytesDone, bytesTotal, waiting *prometheus.Desc
}

// New returns a Collector of node's counters. Register it with one
// registry; scraping a closed node yields an invalid-metric error, which
// promhttp reports.
func New(node *federation.Node, opts Options) *Collector {
	ns := opts.Namespace
	if ns == "" {
		ns = "federation"
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, opts.ConstLabels)
	}
	c := &Collector{node: node, timeout: opts.Timeout}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}

	c.records = d("records", "Live records in the store.")
	c.tombstones = d("tombstones", "Deleted records still kept.")
	c.changes = d("changelog_entries", "Changelog entries not yet truncated.")
	c.subscribers = d("subscribers", "Event subscriptions open.")
	c.peers = d("peers", "Live sync sessions (connected peers).")
	c.dropped = d("events_dropped_total", "Events lost to slow subscribers.")
	c.drift = d("clock_drift_total", "Received batches whose timestamps lay beyond the clock drift bound.")
	c.unsettled = d("repairs_unsettled_total", "Merkle repairs that did not settle after repeated tries.")
	c.tampered = d("audit_tampered_total", "Rewritten or truncated audit histories detected.")
	c.refusals = d("refusals_total", "Refusals recorded in the audit log since the node opened, by reason code.", "reason")
	c.conflicts = d("conflicts_queued", "Manual conflicts waiting for the host.", "collection")
	c.wanted = d("wanted_keys", "Values asked for (wanted list) and not received yet.", "collection")
	c.ready = d("discovery_ready", "1 when the node holds the current mesh secret (announces and recognises its devices).")

	c.mailSent = d("relay_mail_sent_total", "Relay mail envelopes deposited for offline devices.")
	c.mailRecv = d("relay_mail_received_total", "Relay mail envelopes collected.")
	c.mailApplied = d("relay_mail_applied_total", "Transactions applied from relay mail.")
	c.mailRefused = d("relay_mail_refused_total", "Relay mail envelopes or transactions refused.")
	c.mailAcked = d("relay_mail_acked_total", "Relay mail envelopes deleted at the relay on this node's ack.")
	c.mailPending = d("relay_mail_pending", "Relay mail envelopes left at the relay that cannot be applied yet.")

	c.blobChunks = d("blob_chunks_total", "Blob chunks served to peers (sent) and received from them (recv).", "direction")
	c.blobChunkBytes = d("blob_chunk_bytes_total", "Bytes of blob chunks served (sent) and received (recv).", "direction")
	c.blobRejected = d("blob_chunks_rejected_total", "Received blob chunks that failed verification.")
	c.blobWire = d("blob_wire_bytes_total", "Bytes of the blob streams' frames, both roles.", "direction")

	c.connected = d("peer_connected", "1 when the device has a live sync session, 0 otherwise.", "peer")
	c.pChanges = d("peer_changes_total", "Changes exchanged with a peer in its session.", "peer", "direction")
	c.pBytes = d("peer_bytes_total", "Bytes of sync frames exchanged with a peer in its session.", "peer", "direction")
	c.pFrames = d("peer_frames_total", "Sync frames exchanged with a peer in its session.", "peer", "direction")
	c.pRepairRecords = d("peer_repair_records_total", "Record versions exchanged with a peer by Merkle repair.", "peer", "direction")
	c.pConflicts = d("peer_conflicts_total", "Conflicts met while merging a peer's changes.", "peer")
	c.pRepairs = d("peer_repairs_total", "Merkle repairs this device drove with a peer.", "peer")
	c.pEchoes = d("peer_echoes_total", "Changes sent to a peer that originated at it (0 in a correct mesh).", "peer")
	c.pRedundant = d("peer_redundant_total", "Changes received from a peer that this device already held (0 in a correct mesh).", "peer")
	c.pStubs = d("peer_stubs_sent_total", "Changes sent to a peer as stubs (selective sync).", "peer")
	c.pWants = d("peer_wants_sent_total", "Keys whose values this device asked a peer for.", "peer")
	c.pValues = d("peer_values_total", "Values sent at a peer's request (sent) and received over stubs (recv).", "peer", "direction")
	c.pRefused = d("peer_values_refused_total", "Values received from a peer that did not match their stub's digest.", "peer")

	c.recDone = d("sync_records_done", "Records of the current sync episode the peer holds.", "peer", "collection")
	c.recTotal = d("sync_records_total", "Records the current sync episode needs.", "peer", "collection")
	c.bytesDone = d("sync_bytes_done", "Bytes of the current sync episode the peer holds.", "peer", "collection")
	c.bytesTotal = d("sync_bytes_total", "Bytes the current sync episode needs.", "peer", "collection")
	c.waiting = d("sync_waiting", "Records held back from a peer, by reason (periodic, on-demand, offline).", "peer", "collection", "reason")
	return c
}

func (c *Collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.records, c.tombstones, c.changes, c.subscribers, c.peers,
		c.dropped, c.drift, c.unsettled, c.tampered, c.refusals,
		c.conflicts, c.wanted, c.ready,
		c.mailSent, c.mailRecv, c.mailApplied, c.mailRefused, c.mailAcked, c.mailPending,
		c.blobChunks, c.blobChunkBytes, c.blobRejected, c.blobWire,
		c.connected, c.pChanges, c.pBytes, c.pFrames, c.pRepairRecords,
		c.pConflicts, c.pRepairs, c.pEchoes, c.pRedundant,
		c.pStubs, c.pWants, c.pValues, c.pRefused,
		c.recDone, c.recTotal, c.bytesDone, c.bytesTotal, c.waiting,
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the node once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.node.Stats(ctx)
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
	ki := func(d *prometheus.Desc, v int64, l ...string) { k(d, uint64(max(v, 0)), l...) }
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}

	g(c.records, float64(st.Store.Records))
	g(c.tombstones, float64(st.Store.Tombstones))
	g(c.changes, float64(st.Store.Changes))
	g(c.subscribers, float64(st.Subscribers))
	k(c.dropped, st.EventsDropped)
	k(c.drift, st.ClockDrift)
	k(c.unsettled, st.RepairsUnsettled)
	k(c.tampered, st.AuditTampered)
	for reason, n := range st.Queues.Refusals {
		k(c.refusals, n, reason)
	}
	for coll, n := range st.Queues.Conflicts {
		g(c.conflicts, float64(n), coll)
	}
	for coll, n := range st.Queues.Wanted {
		g(c.wanted, float64(n), coll)
	}
	g(c.ready, b(st.Discovery.Ready))

	mail := c.node.RelayMail()
	k(c.mailSent, mail.Sent)
	k(c.mailRecv, mail.Received)
	k(c.mailApplied, mail.Applied)
	k(c.mailRefused, mail.Refused)
	k(c.mailAcked, mail.Acked)
	g(c.mailPending, float64(st.Queues.RelayMailPending))

	bs := c.node.BlobStats()
	ki(c.blobChunks, bs.ChunksSent, "sent")
	ki(c.blobChunks, bs.ChunksReceived, "recv")
	ki(c.blobChunkBytes, bs.ChunkBytesSent, "sent")
	ki(c.blobChunkBytes, bs.ChunkBytesReceived, "recv")
	ki(c.blobRejected, bs.ChunksRejected)
	ki(c.blobWire, bs.WireSent, "sent")
	ki(c.blobWire, bs.WireReceived, "recv")

	// Per peer: one series set per device, summed should a peer briefly
	// hold two sessions (a duplicate series would fail the whole scrape).
	peers := map[federation.DeviceID]*federation.PeerStatus{}
	var order []federation.DeviceID
	for _, p := range c.node.Peers() {
		if a, ok := peers[p.Device]; ok {
			addPeer(a, p)
			continue
		}
		p := p
		peers[p.Device] = &p
		order = append(order, p.Device)
	}
	g(c.peers, float64(len(order)))
	connected := map[federation.DeviceID]bool{}
	for _, dv := range st.Discovery.Devices {
		if _, dup := connected[dv.Device]; !dup {
			connected[dv.Device] = dv.Connected
		}
	}
	for _, id := range order {
		connected[id] = true
	}
	for id, on := range connected {
		g(c.connected, b(on), id.String())
	}
	for _, id := range order {
		p, l := peers[id], id.String()
		k(c.pChanges, p.ChangesSent, l, "sent")
		k(c.pChanges, p.ChangesRecv, l, "recv")
		k(c.pBytes, p.BytesSent, l, "sent")
		k(c.pBytes, p.BytesRecv, l, "recv")
		k(c.pFrames, p.FramesSent, l, "sent")
		k(c.pFrames, p.FramesRecv, l, "recv")
		k(c.pRepairRecords, p.RecordsSent, l, "sent")
		k(c.pRepairRecords, p.RecordsRecv, l, "recv")
		k(c.pConflicts, p.Conflicts, l)
		k(c.pRepairs, p.Repairs, l)
		k(c.pEchoes, p.Echoes, l)
		k(c.pRedundant, p.Redundant, l)
		k(c.pStubs, p.Selective.StubsSent, l)
		k(c.pWants, p.Selective.WantsSent, l)
		k(c.pValues, p.Selective.ValuesSent, l, "sent")
		k(c.pValues, p.Selective.ValuesRecv, l, "recv")
		k(c.pRefused, p.Selective.ValuesRefused, l)
	}

	// Per peer and collection.
	type pc struct {
		peer federation.DeviceID
		coll string
	}
	type waitKey struct {
		pc
		reason string
	}
	seen := map[pc]bool{}
	waits := map[waitKey]uint64{}
	for _, p := range st.Sync.Progress {
		key := pc{p.Peer, p.Collection}
		if p.Reason != federation.WaitNone {
			waits[waitKey{key, p.Reason.String()}] += p.Waiting
		}
		if p.Reason == federation.WaitOffline || seen[key] {
			continue // no episode runs towards an offline peer
		}
		seen[key] = true
		l := []string{p.Peer.String(), p.Collection}
		g(c.recDone, float64(p.RecordsDone), l...)
		g(c.recTotal, float64(p.RecordsTotal), l...)
		g(c.bytesDone, float64(p.BytesDone), l...)
		g(c.bytesTotal, float64(p.BytesTotal), l...)
	}
	for w, n := range waits {
		g(c.waiting, float64(n), w.peer.String(), w.coll, w.reason)
	}
}

// addPeer adds q's counters to p.
func addPeer(p *federation.PeerStatus, q federation.PeerStatus) {
	p.ChangesSent += q.ChangesSent
	p.ChangesRecv += q.ChangesRecv
	p.BytesSent += q.BytesSent
	p.BytesRecv += q.BytesRecv
	p.FramesSent += q.FramesSent
	p.FramesRecv += q.FramesRecv
	p.Conflicts += q.Conflicts
	p.Repairs += q.Repairs
	p.RecordsSent += q.RecordsSent
	p.RecordsRecv += q.RecordsRecv
	p.Echoes += q.Echoes
	p.Redundant += q.Redundant
	p.Selective.StubsSent += q.Selective.StubsSent
	p.Selective.WantsSent += q.Selective.WantsSent
	p.Selective.ValuesSent += q.Selective.ValuesSent
	p.Selective.ValuesRecv += q.Selective.ValuesRecv
	p.Selective.ValuesRefused += q.Selective.ValuesRefused
}
