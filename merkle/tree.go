package merkle

import (
	"cmp"
	"slices"
	"strings"
)

// Leaf bucket bounds. A leaf holding more than splitAt entries becomes an
// inner node with 16 leaf children; an inner node whose count falls to
// mergeAt collapses back into one leaf. The gap between them keeps a key
// that is added and removed at the boundary from splitting and merging on
// every write. They shape memory and query cost only: node hashes are
// defined by position ranges, so two trees that split differently still
// agree on every Summary.
const (
	splitAt = 64
	mergeAt = 24
)

// Tree is the Merkle tree of one collection: a map from key to record digest
// whose nodes are position ranges (see Prefix), each holding the count of
// its keys and the sum modulo 2^256 of their entry hashes. Set and Delete
// update the path from the key's leaf to the root in O(depth) with no
// rebuild.
//
// The zero Tree is an empty tree ready for use. A Tree is not safe for
// concurrent use: the caller serialises writes and queries (normally under
// the same lock as the store's write path).
type Tree struct {
	root     node
	keyBytes int // total length of all keys, for cost estimates
}

// node is a leaf (kids == nil: pos and ents hold its keys sorted by
// position, then key) or an inner node (kids holds its 16 children, pos and
// ents are nil).
type node struct {
	sum   sum256
	count int
	kids  *[Fanout]node
	// pos holds the positions of ents, apart so that a leaf search reads
	// two cache lines of positions instead of one line per probed entry.
	pos  []uint64
	ents []entry
}

// entry is one key in a leaf.
type entry struct {
	key  string
	hash Digest // EntryHash(key, record digest)
}

// Entry is one key of the tree with its entry hash.
type Entry struct {
	Key string
	// Hash is EntryHash(Key, record digest): equal hashes mean equal
	// record digests.
	Hash Digest
}

// Summary describes one node: its range, how many keys it holds and the
// order-independent hash of their entries (the sum modulo 2^256 of their
// entry hashes, little-endian).
type Summary struct {
	Prefix Prefix
	Count  int
	Hash   Digest
}

// New returns an empty tree.
func New() *Tree { return &Tree{} }

// Len returns the number of keys.
func (t *Tree) Len() int { return t.root.count }

// Root returns the tree's root digest, SHA-256(0x03 || u64le(count) || sum).
// Two trees have equal roots when they hold the same (key, digest) pairs,
// whatever the order of the writes that built them, and, barring a hash
// collision (see the package doc on the strength of the sum), only then.
func (t *Tree) Root() Digest { return rootOf(t.root.count, &t.root.sum) }

// cmpKey orders keys by position, then by key.
func cmpKey(apos uint64, akey string, bpos uint64, bkey string) int {
	if c := cmp.Compare(apos, bpos); c != 0 {
		return c
	}
	return strings.Compare(akey, bkey)
}

// descend walks from the root to the leaf holding pos, recording the path,
// and returns the leaf's depth.
func (t *Tree) descend(pos uint64, path *[MaxDepth + 1]*node) int {
	n, d := &t.root, 0
	for n.kids != nil {
		path[d] = n
		n = &n.kids[nibble(pos, d)]
		d++
	}
	path[d] = n
	return d
}

// search finds key in a leaf: its index and whether it is there, or the
// index where it belongs.
func (n *node) search(pos uint64, key string) (int, bool) {
	ps := n.pos
	lo, hi := 0, len(ps)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ps[m] < pos || (ps[m] == pos && n.ents[m].key < key) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(ps) && ps[lo] == pos && n.ents[lo].key == key
}

// insert puts (pos, e) at index i of the leaf, growing its slices by a
// quarter rather than doubling them: leaves are many and small, and slack in
// them is most of the tree's overhead.
func (n *node) insert(i int, pos uint64, e entry) {
	if len(n.ents) == cap(n.ents) || len(n.pos) == cap(n.pos) {
		c := len(n.ents) + len(n.ents)/4 + 2
		n.ents = append(make([]entry, 0, c), n.ents...)
		n.pos = append(make([]uint64, 0, c), n.pos...)
	}
	n.ents = slices.Insert(n.ents, i, e)
	n.pos = slices.Insert(n.pos, i, pos)
}

// remove deletes index i of the leaf, shrinking slices left mostly empty.
func (n *node) remove(i int) {
	n.ents = slices.Delete(n.ents, i, i+1)
	n.pos = slices.Delete(n.pos, i, i+1)
	if cap(n.ents) > 16 && len(n.ents) < cap(n.ents)/4 {
		n.ents = slices.Clip(slices.Clone(n.ents))
		n.pos = slices.Clip(slices.Clone(n.pos))
	}
}

// Set records that key's current version has the given record digest
// (normally RecordDigest of it, tombstones included). Setting the digest a
// key already has changes nothing.
func (t *Tree) Set(key string, digest Digest) {
	t.put(position(key), key, EntryHash(key, digest))
}

// put sets key, at position pos, to entry hash h.
func (t *Tree) put(pos uint64, key string, h Digest) {
	var path [MaxDepth + 1]*node
	depth := t.descend(pos, &path)
	leaf := path[depth]
	i, found := leaf.search(pos, key)
	hv := sumOf(&h)
	if found {
		old := &leaf.ents[i].hash
		if *old == h {
			return
		}
		ov := sumOf(old)
		*old = h
		for _, n := range path[:depth+1] {
			n.sum.add(&hv)
			n.sum.sub(&ov)
		}
		return
	}
	// Clone so that a key sliced from a large buffer does not pin it.
	leaf.insert(i, pos, entry{key: strings.Clone(key), hash: h})
	t.keyBytes += len(key)
	for _, n := range path[:depth+1] {
		n.sum.add(&hv)
		n.count++
	}
	if len(leaf.ents) > splitAt && depth < MaxDepth {
		leaf.split(depth)
	}
}

// Delete removes key and reports whether it was present. Records deleted by
// the host stay in the tree as tombstones (Set with the tombstone's
// digest); Delete is for keys that leave the collection entirely, such as
// purged tombstones or keys outside a partial replica.
func (t *Tree) Delete(key string) bool {
	pos := position(key)
	var path [MaxDepth + 1]*node
	depth := t.descend(pos, &path)
	leaf := path[depth]
	i, found := leaf.search(pos, key)
	if !found {
		return false
	}
	hv := sumOf(&leaf.ents[i].hash)
	leaf.remove(i)
	t.keyBytes -= len(key)
	for _, n := range path[:depth+1] {
		n.sum.sub(&hv)
		n.count--
	}
	for d := 0; d < depth; d++ {
		if path[d].count <= mergeAt {
			path[d].collapse()
			break
		}
	}
	return true
}

// Has reports whether key is present with the given record digest.
func (t *Tree) Has(key string, digest Digest) bool {
	h, ok := t.entryHash(key)
	return ok && h == EntryHash(key, digest)
}

// Contains reports whether key is present.
func (t *Tree) Contains(key string) bool {
	_, ok := t.entryHash(key)
	return ok
}

func (t *Tree) entryHash(key string) (Digest, bool) {
	pos := position(key)
	var path [MaxDepth + 1]*node
	leaf := path[t.descend(pos, &path)]
	i, found := leaf.search(pos, key)
	if !found {
		return Digest{}, false
	}
	return leaf.ents[i].hash, true
}

// split turns a leaf at depth d into an inner node with 16 leaf children,
// splitting further any child that is still over the bound (keys sharing
// more nibbles).
func (n *node) split(d int) {
	var sizes [Fanout]int
	for _, p := range n.pos {
		sizes[nibble(p, d)]++
	}
	kids := new([Fanout]node)
	for i := range kids {
		if sizes[i] > 0 {
			c := sizes[i] + sizes[i]/4 + 1
			kids[i].ents = make([]entry, 0, c)
			kids[i].pos = make([]uint64, 0, c)
		}
	}
	for i, p := range n.pos {
		e := &n.ents[i]
		k := &kids[nibble(p, d)]
		k.ents = append(k.ents, *e)
		k.pos = append(k.pos, p)
		hv := sumOf(&e.hash)
		k.sum.add(&hv)
		k.count++
	}
	n.ents, n.pos, n.kids = nil, nil, kids
	if d+1 < MaxDepth {
		for i := range kids {
			if kids[i].count > splitAt {
				kids[i].split(d + 1)
			}
		}
	}
}

// collapse turns an inner node back into a leaf holding all its keys, in
// order. Its sum and count are unchanged.
func (n *node) collapse() {
	c := n.count + n.count/4 + 1
	ents, pos := make([]entry, 0, c), make([]uint64, 0, c)
	n.walk(func(p uint64, e *entry) {
		ents = append(ents, *e)
		pos = append(pos, p)
	})
	n.kids, n.ents, n.pos = nil, ents, pos
}

// walk calls fn for every entry under n in (position, key) order.
func (n *node) walk(fn func(uint64, *entry)) {
	if n.kids == nil {
		for i := range n.ents {
			fn(n.pos[i], &n.ents[i])
		}
		return
	}
	for i := range n.kids {
		n.kids[i].walk(fn)
	}
}

// build makes a tree from entries already sorted by (position, key), with
// their positions, and free of duplicate keys, in O(n * depth).
func build(pos []uint64, ents []entry) *Tree {
	t := New()
	for i := range ents {
		hv := sumOf(&ents[i].hash)
		t.root.sum.add(&hv)
		t.keyBytes += len(ents[i].key)
	}
	t.root.count = len(ents)
	t.root.ents, t.root.pos = ents, pos
	if len(ents) > splitAt {
		t.root.split(0)
	}
	return t
}
