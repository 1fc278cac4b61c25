package anchor

import (
	"maps"
	"sync"

	"github.com/devicemesh/federation/audit"
)

// refusals counts the refusal entries recorded in this open, by reason
// code, so that Stats need not scan the audit log.
type refusals struct {
	mu sync.Mutex
	by map[string]uint64
}

// note counts e when it records a refusal.
func (r *refusals) note(e audit.Entry) {
	if e.Kind != audit.KindRefusal {
		return
	}
	f, _ := e.Detail.Get("reason")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = make(map[string]uint64)
	}
	r.by[f.Text]++
}

// Refusals returns how many refusals (audit.KindRefusal entries) were
// recorded since New, by reason code ("pairing-failed", "value-digest",
// ...); a reason never met is absent.
func (a *Anchor) Refusals() map[string]uint64 {
	a.refused.mu.Lock()
	defer a.refused.mu.Unlock()
	return maps.Clone(a.refused.by)
}
