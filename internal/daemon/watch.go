package daemon

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/devicemesh/federation"
	v1 "github.com/devicemesh/federation/api/federation/v1"
)

// watcher raises the registry events that the node does not publish
// itself (a device added, renamed or revoked) by looking at Node.Devices
// every poll interval, and hands them to its listeners. Session events
// (peer-connected, peer-disconnected, sync-progress) come from the node.
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
	devices := map[federation.DeviceID]deviceState{}
	first := true
	for {
		w.step(devices, first)
		first = false
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

func (w *watcher) step(devices map[federation.DeviceID]deviceState, first bool) {
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
