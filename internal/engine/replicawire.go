package engine

import (
	"fmt"
	"sort"

	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/policy"
)

// Resolvers returns the node's conflict.Registry: each configured
// collection's Resolver (last-writer-wins where none is set), and the
// resolvers of the SDK's synced internal collections. Collections not
// configured get conflict.Default, which is last-writer-wins for every
// name that DefaultPolicies does not list.
func Resolvers(collections map[string]core.Policy, policy func(collection string) core.Policy) (*conflict.Registry, error) {
	g := conflict.NewRegistry()
	names := []string{devices.Collection, replica.ReplicasCollection, anchor.Collection}
	for c := range collections {
		names = append(names, c)
	}
	for _, c := range names {
		r := policy(c).Resolver
		if r == nil {
			r = conflict.LWW{}
		}
		if err := g.Register(c, r); err != nil {
			return nil, fmt.Errorf("%w: %w", core.ErrInvalidConfig, err)
		}
	}
	return g, nil
}

// Unsettled names the collections whose roots differ after tries repairs
// at equal version vectors (sorted), and why as far as this device can
// tell: queuedIn counts the manual conflicts waiting in them.
func Unsettled(tries int, ours, theirs map[string][32]byte, queuedIn func(collections []string) int) (differ []string, reason string) {
	for c, r := range ours {
		if theirs[c] != r {
			differ = append(differ, c)
		}
	}
	for c := range theirs {
		if _, ok := ours[c]; !ok {
			differ = append(differ, c)
		}
	}
	sort.Strings(differ)
	reason = fmt.Sprintf("records differ after %d repairs at equal version vectors (a store that does not keep what repair installs, or a resolver that does not give the same result on every device)", tries)
	if queued := queuedIn(differ); queued > 0 {
		reason = fmt.Sprintf("%d conflicts wait for the host to resolve them (Node.Conflicts)", queued)
	}
	return differ, reason
}

// PolicyTable builds the node's policy table: the host's policies (over
// DefaultPolicies), collections named nowhere medium and immediate, the
// node's own collections local-only except those the mesh runs on, pinned
// high and immediate whatever a device's policy says.
func PolicyTable(policies map[string]core.Policy) *policy.Table {
	t := policy.NewTable(core.Policy{Priority: core.PriorityMedium, Mode: core.ModeImmediate})
	for name, p := range policies {
		t.Set(name, p)
	}
	t.Reserve(replica.InternalPrefix, core.Policy{Priority: core.PriorityNone, Mode: core.ModeLocalOnly})
	t.Pin(devices.Collection, core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate, Resolver: conflict.LWW{}})
	t.Pin(replica.ReplicasCollection, core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate, Resolver: conflict.LWW{}})
	t.Pin(anchor.Collection, core.Policy{Priority: core.PriorityHigh, Mode: core.ModeImmediate, Resolver: anchor.Resolver{}})
	return t
}
