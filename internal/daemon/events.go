package daemon

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/devicemesh/federation"
	v1 "github.com/devicemesh/federation/api/federation/v1"
)

// eventKinds maps the node's event kinds by name, so that kinds other
// lanes add ("connected", "sync-progress", ...) map here without a code
// change once they carry these names; any other name arrives as
// EVENT_KIND_OTHER with kind_name set.
var eventKinds = map[string]v1.EventKind{
	"change":            v1.EventKind_EVENT_KIND_CHANGE,
	"conflict":          v1.EventKind_EVENT_KIND_CONFLICT,
	"resolved":          v1.EventKind_EVENT_KIND_RESOLVED,
	"clock-drift":       v1.EventKind_EVENT_KIND_CLOCK_DRIFT,
	"repair-unsettled":  v1.EventKind_EVENT_KIND_REPAIR_UNSETTLED,
	"audit-tampered":    v1.EventKind_EVENT_KIND_AUDIT_TAMPERED,
	"peer-connected":    v1.EventKind_EVENT_KIND_CONNECTED,
	"peer-disconnected": v1.EventKind_EVENT_KIND_DISCONNECTED,
	"revoked":           v1.EventKind_EVENT_KIND_REVOKED,
	"connected":         v1.EventKind_EVENT_KIND_CONNECTED,
	"connect":           v1.EventKind_EVENT_KIND_CONNECTED,
	"disconnected":      v1.EventKind_EVENT_KIND_DISCONNECTED,
	"disconnect":        v1.EventKind_EVENT_KIND_DISCONNECTED,
	"sync-progress":     v1.EventKind_EVENT_KIND_SYNC_PROGRESS,
	"registry":          v1.EventKind_EVENT_KIND_REGISTRY,
}

// EventOf converts a node event.
func EventOf(e federation.Event) *v1.Event {
	name := e.Kind.String()
	kind, ok := eventKinds[name]
	if !ok {
		kind = v1.EventKind_EVENT_KIND_OTHER
	}
	out := &v1.Event{Kind: kind, KindName: name, Collection: e.Collection, Key: e.Key, Deleted: e.Deleted,
		Local: e.Local, Timestamp: uint64(e.Timestamp), ConflictId: e.ConflictID, Reason: e.Reason}
	if e.Origin != (federation.DeviceID{}) {
		out.Origin = e.Origin.String()
	}
	if p := e.Progress; p != nil {
		out.Sync = &v1.SyncProgress{Peer: p.Peer.String(), Collection: p.Collection,
			RecordsDone: p.RecordsDone, RecordsTotal: p.RecordsTotal, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal,
			Rate: p.Rate, Waiting: p.Waiting, Reason: p.Reason.String()}
	}
	return out
}

// Subscribe streams the node's events, and the watcher's session and
// registry events, until ctx ends or the service or node closes.
func (s *Service) Subscribe(ctx context.Context, req *v1.SubscribeRequest, send func(*v1.Event) error) error {
	for _, c := range req.GetCollections() {
		if c == "" {
			return invalid("subscribe: empty collection name")
		}
	}
	sub := s.node.Subscribe(federation.SubscribeOptions{Collections: req.GetCollections()})
	defer sub.Close()
	syn := s.watch.add()
	defer s.watch.remove(syn)
	// A nil message sends the response headers (Connect) and nothing on
	// NATS: a client whose call returned is subscribed.
	if err := send(nil); err != nil {
		return err
	}
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				return connect.NewError(connect.CodeUnavailable, errors.New("subscribe: the node closed"))
			}
			ev := EventOf(e)
			ev.Dropped = sub.Dropped()
			if err := send(ev); err != nil {
				return err
			}
		case ev := <-syn:
			if err := send(ev); err != nil {
				return err
			}
		case <-s.stop:
			return connect.NewError(connect.CodeUnavailable, errors.New("subscribe: the daemon is stopping"))
		case <-ctx.Done():
			return ToConnectError(ctx.Err())
		}
	}
}
