package daemon

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation"
	v1 "github.com/devicemesh/federation/api/federation/v1"
)

// watcher raises the session and registry events that the node does not
// publish itself (connect, disconnect, sync progress, registry changes) by
// looking at Node.Peers and Node.Devices every poll interval, and hands
// them to its listeners. When the node publishes such kinds itself, the
// lead can drop the matching part of this.
type watcher struct {
	node *federation.Node
	poll time.Duration

	mu        sync.Mutex
	listeners map[chan *v1.Event]struct{}
}

func newWatcher(node *federation.Node, poll time.Duration) *watcher {
	return &watcher{node: node, poll: poll, listeners: map[chan *v1.Event]struct{}{}}
}

// add returns a channel of watcher events; remove it when done.
func (w *watcher) add() chan *v1.Event {
	ch := make(chan *v1.Event, 256)
	w.mu.Lock()
	w.listeners[ch] = struct{}{}
	w.mu.Unlock()
	return ch
}

func (w *watcher) remove(ch chan *v1.Event) {
	w.mu.Lock()
	delete(w.listeners, ch)
	w.mu.Unlock()
}

// emit hands e to every listener, dropping it for a full one.
func (w *watcher) emit(e *v1.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.listeners {
		select {
		case ch <- e:
		default:
		}
	}
}

type deviceState struct {
	name, trust string
}

// run polls until stop closes.
func (w *watcher) run(stop <-chan struct{}) {
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	peers := map[federation.DeviceID]federation.PeerStatus{}
	devices := map[federation.DeviceID]deviceState{}
	first := true
	for {
		w.step(peers, devices, first)
		first = false
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

func (w *watcher) step(peers map[federation.DeviceID]federation.PeerStatus, devices map[federation.DeviceID]deviceState, first bool) {
	seen := map[federation.DeviceID]bool{}
	for _, p := range w.node.Peers() {
		seen[p.Device] = true
		old, ok := peers[p.Device]
		peers[p.Device] = p
		switch {
		case !ok:
			w.emit(&v1.Event{Kind: v1.EventKind_EVENT_KIND_CONNECTED, KindName: "connected", Origin: p.Device.String(), Progress: peerStats(p)})
		case old.ChangesSent != p.ChangesSent || old.ChangesRecv != p.ChangesRecv || old.RecordsRecv != p.RecordsRecv || old.RecordsSent != p.RecordsSent:
			w.emit(&v1.Event{Kind: v1.EventKind_EVENT_KIND_SYNC_PROGRESS, KindName: "sync-progress", Origin: p.Device.String(), Progress: peerStats(p)})
		}
	}
	for id := range peers {
		if !seen[id] {
			delete(peers, id)
			w.emit(&v1.Event{Kind: v1.EventKind_EVENT_KIND_DISCONNECTED, KindName: "disconnected", Origin: id.String()})
		}
	}
	devs, err := w.node.Devices(context.Background())
	if err != nil {
		return
	}
	ids := make([]federation.DeviceID, 0, len(devs))
	for _, d := range devs {
		ids = append(ids, d.ID)
		st := deviceState{name: d.Name, trust: d.Trust.String()}
		if old, ok := devices[d.ID]; (!ok || old != st) && !first {
			w.emit(&v1.Event{Kind: v1.EventKind_EVENT_KIND_REGISTRY, KindName: "registry", Origin: d.ID.String(), Reason: "device " + st.trust})
		}
		devices[d.ID] = st
	}
	for id := range devices {
		if !slices.Contains(ids, id) {
			delete(devices, id)
		}
	}
}
