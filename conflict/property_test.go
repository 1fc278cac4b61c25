package conflict

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/devicemesh/federation/core"
)

func sameResolution(a, b core.Resolution) bool {
	return a.Deleted == b.Deleted && a.Manual == b.Manual && (a.Deleted || bytes.Equal(a.Value, b.Value))
}

// drawVersion draws one version of a record: some host writes on top of a
// shared base, or a deletion.
func drawVersion(t *rapid.T, s strategy, base []byte, label string) core.Record {
	ts := core.Timestamp(rapid.Uint64Range(1, 4).Draw(t, label+"ts"))
	origin := rapid.IntRange(0, 2).Draw(t, label+"origin")
	if rapid.IntRange(0, 5).Draw(t, label+"deleted") == 0 {
		return tomb(ts, origin)
	}
	v := base
	for n := rapid.IntRange(1, 3).Draw(t, label+"ops"); n > 0; n-- {
		v = s.op(t, v, origin, ts)
	}
	return rec(v, ts, origin)
}

// TestSymmetric checks that every resolver gives the same outcome with
// Local and Remote swapped, including ties on timestamp and origin.
func TestSymmetric(t *testing.T) {
	for _, s := range strategies() {
		t.Run(s.name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				var base []byte
				if rapid.Bool().Draw(t, "hasBase") {
					base = s.op(t, nil, 0, 1)
				}
				l, r := drawVersion(t, s, base, "l"), drawVersion(t, s, base, "r")
				c := core.Conflict{Collection: "c", Key: "k", Local: l, Remote: r}
				if base != nil {
					b := rec(base, 1, 0)
					c.Base = &b
				}
				swapped := c
				swapped.Local, swapped.Remote = r, l
				ra, errA := s.r.Resolve(ctx, c)
				rb, errB := s.r.Resolve(ctx, swapped)
				if (errA == nil) != (errB == nil) {
					t.Fatalf("errors differ: %v / %v", errA, errB)
				}
				if errA != nil {
					t.Fatalf("resolve: %v", errA)
				}
				if !sameResolution(ra, rb) {
					t.Fatalf("not symmetric:\n%+v\n%+v", ra, rb)
				}
			})
		})
	}
}

// node is one simulated device holding its current version of a record.
type node struct {
	id  int
	cur core.Record
}

// receive resolves the local version against a remote one, as the engine
// does on sync, and installs the outcome as a new local version. The new
// version is stamped by the receiving node, so any dependence of the
// CRDT-backed strategies on record stamps rather than values would show.
func (n *node) receive(t *rapid.T, r core.Resolver, remote core.Record) {
	res, err := r.Resolve(ctx, core.Conflict{Collection: "c", Key: "k", Local: n.cur, Remote: remote})
	if err != nil {
		t.Fatalf("node %d resolve: %v", n.id, err)
	}
	ts := max(n.cur.Timestamp, remote.Timestamp) + 1
	next := rec(res.Value, ts, n.id)
	next.Deleted = res.Deleted
	n.cur = next
}

// TestThreeNodeConvergence simulates three devices that start from one
// version, each make concurrent writes (or a deletion), then sync pairwise
// in a random order of random length followed by a round that spreads
// everything: all three must end byte-identical.
func TestThreeNodeConvergence(t *testing.T) {
	for _, s := range strategies() {
		if !s.join {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				base := s.op(t, nil, 0, 1)
				nodes := make([]*node, 3)
				for i := range nodes {
					nodes[i] = &node{id: i, cur: rec(base, 1, 0)}
				}
				// Concurrent writes: distinct timestamps per node.
				for i, n := range nodes {
					ts := core.Timestamp(10 + i)
					if rapid.IntRange(0, 5).Draw(t, fmt.Sprint("del", i)) == 0 {
						n.cur = tomb(ts, i)
						continue
					}
					v := n.cur.Value
					for k := rapid.IntRange(1, 2).Draw(t, fmt.Sprint("ops", i)); k > 0; k-- {
						v = s.op(t, v, i, ts)
					}
					n.cur = rec(v, ts, i)
				}
				steps := rapid.SliceOfN(rapid.IntRange(0, 5), 0, 8).Draw(t, "schedule")
				pairs := [][2]int{{0, 1}, {0, 2}, {1, 0}, {1, 2}, {2, 0}, {2, 1}}
				for _, st := range steps {
					p := pairs[st]
					nodes[p[0]].receive(t, s.r, nodes[p[1]].cur)
				}
				// Spread everything: 0 hears 1 and 2, then 1 and 2 hear 0.
				for _, p := range [][2]int{{0, 1}, {0, 2}, {1, 0}, {2, 0}} {
					nodes[p[0]].receive(t, s.r, nodes[p[1]].cur)
				}
				for _, n := range nodes[1:] {
					a, b := nodes[0].cur, n.cur
					if a.Deleted != b.Deleted || !bytes.Equal(a.Value, b.Value) {
						t.Fatalf("node %d diverged:\n%q\n%q", n.id, a.Value, b.Value)
					}
				}
			})
		})
	}
}
