package merkle

import "fmt"

// locate returns the materialised node for p when there is one (depth ==
// p.Len()), or else the leaf above it whose range contains p's range.
func (t *Tree) locate(p Prefix) (*node, int) {
	n, d := &t.root, 0
	for d < p.Len() && n.kids != nil {
		n = &n.kids[p.Nibble(d)]
		d++
	}
	return n, d
}

// Summary returns the count and hash of the node p, whatever its depth: a
// node deeper than the tree's own leaves is summed from the leaf's entries.
func (t *Tree) Summary(p Prefix) Summary {
	var out [1]nodeSum
	t.expand(p, 0, out[:])
	return Summary{Prefix: p, Count: out[0].count, Hash: out[0].sum.digest()}
}

// Summaries returns the 16 children of each prefix in ps, in order: the
// answer a responder gives to a request to expand those nodes one level.
// Prefixes at MaxDepth have no children and contribute nothing.
func (t *Tree) Summaries(ps []Prefix) []Summary {
	out := make([]Summary, 0, Fanout*len(ps))
	var sums [Fanout]nodeSum
	for _, p := range ps {
		if p.Len() >= MaxDepth {
			continue
		}
		t.expand(p, 1, sums[:])
		for i := range sums {
			out = append(out, Summary{Prefix: p.Child(i), Count: sums[i].count, Hash: sums[i].sum.digest()})
		}
	}
	return out
}

// Keys returns the keys in p's range with their entry hashes, in position
// order.
func (t *Tree) Keys(p Prefix) []Entry {
	var out []Entry
	t.scan(p, nil, func(_ uint64, key []byte, h *Digest) bool {
		out = append(out, Entry{Key: string(key), Hash: *h})
		return true
	})
	return out
}

// Entries calls fn for every key in position order until fn returns false.
// The tree must not be modified meanwhile.
func (t *Tree) Entries(fn func(Entry) bool) {
	t.scan(Prefix{}, nil, func(_ uint64, key []byte, h *Digest) bool { return fn(Entry{Key: string(key), Hash: *h}) })
}

// nodeSum is a node's count and sum while it is being computed.
type nodeSum struct {
	sum   sum256
	count int
}

// expand fills out (length 16^k) with the descendants of p that lie k levels
// below it, in position order. It visits only the subtree of p, and reads
// stored sums wherever the tree has a node at the target depth.
func (t *Tree) expand(p Prefix, k int, out []nodeSum) {
	clear(out)
	target := p.Len() + k
	shift := 64 - 4*uint(target) // target 0: shift 64, slot 0 (Go shifts saturate)
	mask := uint64(len(out) - 1)
	slot := func(pos uint64) int { return int((pos >> shift) & mask) }
	addEntries := func(n *node, filter bool) {
		for i, pos := range n.pos {
			if filter && !p.contains(pos) {
				continue
			}
			s := &out[slot(pos)]
			hv := sumOf(&n.ents[i].hash)
			s.sum.add(&hv)
			s.count++
		}
	}
	n, d := t.locate(p)
	if d < p.Len() {
		addEntries(n, true)
		return
	}
	var rec func(n *node, d int, bits uint64)
	rec = func(n *node, d int, bits uint64) {
		switch {
		case n.count == 0:
		case d == target:
			s := &out[slot(bits)]
			s.sum.add(&n.sum)
			s.count += n.count
		case n.kids == nil:
			addEntries(n, false)
		default:
			for i := range n.kids {
				rec(&n.kids[i], d+1, bits|uint64(i)<<(60-4*uint(d)))
			}
		}
	}
	rec(n, d, p.bits)
}

// cursor is a position in (position, key) order.
type cursor struct {
	pos uint64
	key string
}

func cursorAfter(key string) *cursor { return &cursor{pos: position(key), key: key} }

// scan calls fn for the entries in p's range that come after c (all of them
// when c is nil), in (position, key) order, until fn returns false. It skips
// subtrees that lie wholly before c, so a paged listing costs the page, not
// the range.
func (t *Tree) scan(p Prefix, c *cursor, fn func(pos uint64, key []byte, h *Digest) bool) {
	n, d := t.locate(p)
	if d < p.Len() {
		n.scanLeaf(p, true, c, fn)
		return
	}
	n.scan(p, d, p.bits, c, fn)
}

func (n *node) scan(p Prefix, d int, bits uint64, c *cursor, fn func(pos uint64, key []byte, h *Digest) bool) bool {
	if n.kids == nil {
		return n.scanLeaf(p, false, c, fn)
	}
	for i := range n.kids {
		kb := bits | uint64(i)<<(60-4*uint(d))
		last := kb | (uint64(1)<<(60-4*uint(d)) - 1)
		if n.kids[i].count == 0 || (c != nil && last < c.pos) {
			continue
		}
		if !n.kids[i].scan(p, d+1, kb, c, fn) {
			return false
		}
	}
	return true
}

func (n *node) scanLeaf(p Prefix, filter bool, c *cursor, fn func(pos uint64, key []byte, h *Digest) bool) bool {
	i := 0
	if c != nil {
		var found bool
		if i, found = n.search(c.pos, c.key); found {
			i++
		}
	}
	for ; i < len(n.ents); i++ {
		if filter && !p.contains(n.pos[i]) {
			continue
		}
		if !fn(n.pos[i], n.key(i), &n.ents[i].hash) {
			return false
		}
	}
	return true
}

// Respond answers a reconciliation request from a peer: the stateless
// responder side of the protocol. Listings are cut short (More set) once
// they pass ListBudget bytes, but the first non-empty listing always makes
// progress. It returns an ErrLimit error for a request Validate refuses.
func (t *Tree) Respond(req *Request) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("respond: %w", err)
	}
	if req.HasRoot && req.Root == t.Root() {
		return &Response{Converged: true}, nil
	}
	resp := &Response{Nodes: make([][]NodeFP, len(req.Expand)), Lists: make([]Listing, len(req.List))}
	var sums []nodeSum
	for i, e := range req.Expand {
		sums = append(sums[:0], make([]nodeSum, 1<<(4*e.Depth))...)
		t.expand(e.Prefix, e.Depth, sums)
		nodes := make([]NodeFP, len(sums))
		for j := range sums {
			if sums[j].count > 0 {
				h := sums[j].sum.digest()
				nodes[j] = NodeFP{Count: uint64(sums[j].count), FP: fingerprint(req.Salt, req.FPLen, &h)}
			}
		}
		resp.Nodes[i] = nodes
	}
	used := 0
	for i, l := range req.List {
		var c *cursor
		if l.HasAfter {
			c = cursorAfter(l.After)
		}
		out := &resp.Lists[i]
		t.scan(l.Prefix, c, func(_ uint64, key []byte, h *Digest) bool {
			if used >= ListBudget {
				out.More = true
				return false
			}
			out.Entries = append(out.Entries, KeyFP{Key: string(key), FP: fingerprint(req.Salt, req.FPLen, h)})
			used += uvarintLen(uint64(len(key))) + len(key) + req.FPLen
			return true
		})
	}
	return resp, nil
}
