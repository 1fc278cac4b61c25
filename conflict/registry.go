package conflict

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/devicemesh/federation/core"
)

// Strategy names accepted by ByName, for hosts that select resolvers from
// configuration.
const (
	StrategyLWW           = "lww"
	StrategyFieldMerge    = "field-merge"
	StrategyChronological = "chronological"
	StrategyAverage       = "weighted-average"
	StrategyVector        = "vector-merge"
	StrategyUnion         = "union"
	StrategyManual        = "manual"
)

// ByName returns the built-in strategy called name (one of the Strategy
// constants), or ErrUnknownStrategy.
func ByName(name string) (core.Resolver, error) {
	switch name {
	case StrategyLWW:
		return LWW{}, nil
	case StrategyFieldMerge:
		return FieldMerge{}, nil
	case StrategyChronological:
		return Chronological{}, nil
	case StrategyAverage:
		return WeightedAverage{}, nil
	case StrategyVector:
		return VectorMerge{}, nil
	case StrategyUnion:
		return Union{}, nil
	case StrategyManual:
		return Manual{}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownStrategy, name)
}

// Default returns the standard strategy for a collection, following the
// design's data-type table:
//
//	core.CollectionProfile       FieldMerge (last-writer-wins per field)
//	core.CollectionConversation  Chronological
//	core.CollectionPersonality   WeightedAverage
//	core.CollectionEmbeddings    VectorMerge
//	core.CollectionAnalytics     Union (append-only)
//	core.CollectionMedia         LWW (content-addressed, never merged)
//	core.CollectionCache         LWW (local only: it never syncs, so never conflicts)
//
// Any other collection gets LWW.
func Default(collection string) core.Resolver {
	switch collection {
	case core.CollectionProfile:
		return FieldMerge{}
	case core.CollectionConversation:
		return Chronological{}
	case core.CollectionPersonality:
		return WeightedAverage{}
	case core.CollectionEmbeddings:
		return VectorMerge{}
	case core.CollectionAnalytics:
		return Union{}
	}
	return LWW{}
}

// Registry maps collections to resolvers: the Default strategies, overridden
// by whatever the host registers. It is itself a core.Resolver that
// dispatches on Conflict.Collection, so the engine can hold one. It is safe
// for concurrent use; the zero value is not usable, create one with
// NewRegistry.
type Registry struct {
	mu  sync.RWMutex
	own map[string]core.Resolver
}

var _ core.Resolver = (*Registry)(nil)

// NewRegistry returns a registry holding only the defaults.
func NewRegistry() *Registry { return &Registry{own: make(map[string]core.Resolver)} }

// Register makes r the resolver for collection, replacing the default or an
// earlier registration. r must be deterministic and symmetric (see
// core.Resolver). It returns ErrInvalidArgument for an invalid collection
// name or a nil resolver.
func (g *Registry) Register(collection string, r core.Resolver) error {
	if err := core.ValidateKey(collection, "", 0); err != nil {
		return fmt.Errorf("register resolver: %w: %w", ErrInvalidArgument, err)
	}
	if r == nil {
		return fmt.Errorf("register resolver for %q: %w: nil resolver", collection, ErrInvalidArgument)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.own[collection] = r
	return nil
}

// Unregister drops the host's resolver for collection, restoring the
// default.
func (g *Registry) Unregister(collection string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.own, collection)
}

// Resolver returns the resolver for collection: the registered one, or
// Default(collection).
func (g *Registry) Resolver(collection string) core.Resolver {
	g.mu.RLock()
	r, ok := g.own[collection]
	g.mu.RUnlock()
	if ok {
		return r
	}
	return Default(collection)
}

// Registered returns the collections with a host-registered resolver,
// sorted.
func (g *Registry) Registered() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]string, 0, len(g.own))
	for c := range g.own {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Resolve settles c with the resolver for c.Collection.
func (g *Registry) Resolve(ctx context.Context, c core.Conflict) (core.Resolution, error) {
	return g.Resolver(c.Collection).Resolve(ctx, c)
}
