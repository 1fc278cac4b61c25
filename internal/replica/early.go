package replica

import "github.com/devicemesh/federation/core"

// A record can be installed before this device's version vector covers
// it: a Priority transaction applied ahead of its origin's stream, or a
// Merkle repair's records before the Repaired frame raises the vector.
// A local write's causal context is the version vector plus its own dot,
// which then does not cover that record, so the write would be judged
// concurrent with the very version it replaces (and, in a collection with
// a manual resolver, queued as a conflict on every device: a user's
// resolution of a conflict that arrived early would raise the conflict
// again). early remembers, per key, the contexts installed ahead of the
// vector; a local write merges its key's into its context. Entries go once
// the vector covers them. Under writeMu.
type early map[txKey]core.VersionVector

// note records the contexts of recs that vv does not cover.
func (e *early) note(recs []core.Record, vv core.VersionVector) {
	for _, r := range recs {
		if covers(vv, r.Context) {
			continue
		}
		if *e == nil {
			*e = early{}
		}
		k := txKey{r.Collection, r.Key}
		c := (*e)[k].Clone()
		if c == nil {
			c = core.VersionVector{}
		}
		c.Merge(r.Context)
		(*e)[k] = c
	}
}

// widen merges into ctx the early context of (collection, key), if any.
func (e early) widen(ctx core.VersionVector, collection, key string) {
	if c, ok := e[txKey{collection, key}]; ok {
		ctx.Merge(c)
	}
}

// prune drops the entries vv covers.
func (e early) prune(vv core.VersionVector) {
	for k, c := range e {
		if covers(vv, c) {
			delete(e, k)
		}
	}
}
