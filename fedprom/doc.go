// Package fedprom exports a federation.Node's counters to Prometheus.
//
// New returns a prometheus.Collector that reads the node at each scrape
// (Node.Stats, Node.Peers, Node.BlobStats, Node.RelayMail): nothing is
// counted twice and nothing runs between scrapes. Register it with a
// registry of the host's and serve that registry with promhttp:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(fedprom.New(node, fedprom.Options{}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Metric names start with Options.Namespace ("federation" by default).
// Labels are bounded: peer (a device id of the mesh), collection (a
// collection name of the host's) and small fixed sets (direction "sent"
// or "recv", a wait reason, a refusal reason code).
//
// Node-wide:
//
//	records, tombstones, changelog_entries     gauges: the store
//	subscribers, peers                         gauges: event subscriptions, live sync sessions
//	events_dropped_total                       events lost to slow subscribers
//	clock_drift_total                          received batches beyond Config.MaxClockDrift
//	repairs_unsettled_total                    Merkle repairs that did not settle
//	audit_tampered_total                       rewritten or truncated audit histories detected
//	refusals_total{reason}                     refusals recorded in the audit log
//	conflicts_queued{collection}               manual conflicts waiting for the host
//	wanted_keys{collection}                    values asked for, not received yet
//	discovery_ready                            1 when the node holds the current mesh secret
//	relay_mail_*_total, relay_mail_pending     relay mail envelopes (zero without relay mail)
//	blob_*_total                               blob chunks and bytes served, received, rejected
//
// Per peer (label peer):
//
//	peer_connected                             1 with a live session, 0 otherwise (every registry device)
//	peer_changes_total{direction}              changes exchanged
//	peer_bytes_total{direction}                bytes of sync frames exchanged
//	peer_frames_total{direction}               sync frames exchanged
//	peer_repair_records_total{direction}       record versions exchanged by Merkle repair
//	peer_conflicts_total                       conflicts met merging the peer's changes
//	peer_repairs_total                         Merkle repairs driven with the peer
//	peer_echoes_total, peer_redundant_total    changes sent back to their origin, received twice
//	peer_stubs_sent_total, peer_wants_sent_total  selective sync: stubs sent, keys asked
//	peer_values_total{direction}               selective sync: values sent on request, received
//	peer_values_refused_total                  values refused: digest mismatch
//
// Per peer and collection (labels peer, collection):
//
//	sync_records_done, sync_records_total      the current sync episode, in records
//	sync_bytes_done, sync_bytes_total          the same in bytes
//	sync_waiting{reason}                       records held back, by wait reason
//
// The per-peer counters belong to a sync session: they restart from zero
// when the peer reconnects, which Prometheus' rate and increase read as a
// counter reset. A peer without a live session has no per-peer series but
// peer_connected; a collection with no sync episode in progress has no
// sync_* series. A peer offline is reported by sync_waiting with reason
// "offline" and an empty collection.
package fedprom
