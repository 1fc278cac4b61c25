package merkle

import (
	"cmp"
	"slices"
	"strings"

	"github.com/devicemesh/federation/core"
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
// position, then key) or an inner node (kids holds its 16 children; pos,
// ents and keys are nil).
//
// A leaf holds no pointer per key: the key bytes live in one arena per leaf
// and each entry refers to them by offset. A million-key tree is then a few
// tens of thousands of small objects the garbage collector scans in
// microseconds, instead of a million strings it would trace on every cycle
// of the host's process.
type node struct {
	sum   sum256
	count int
	kids  *[Fanout]node
	// pos holds the positions of ents, apart so that a leaf search reads
	// two cache lines of positions instead of one line per probed entry.
	pos  []uint64
	ents []entry
	// keys is the arena the entries' keys are cut from. Bytes of keys that
	// left the leaf stay until the arena is compacted.
	keys []byte
}

// entry is one key in a leaf: where its bytes sit in the leaf's arena, and
// its entry hash.
type entry struct {
	off, n uint32
	hash   Digest // EntryHash(key, record digest)
}

// key returns the bytes of entry i, a view into the arena that the caller
// must not modify or keep past the next change to the leaf.
func (n *node) key(i int) []byte {
	e := &n.ents[i]
	return n.keys[e.off : e.off+e.n : e.off+e.n]
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
		if ps[m] < pos || (ps[m] == pos && string(n.key(m)) < key) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(ps) && ps[lo] == pos && string(n.key(lo)) == key
}

// insert puts key, at position pos with entry hash h, at index i of the
// leaf, growing its slices by an eighth rather than doubling them: leaves
// are many and small, and slack in them is most of the tree's overhead.
func (n *node) insert(i int, pos uint64, key string, h Digest) {
	if len(n.ents) == cap(n.ents) || len(n.pos) == cap(n.pos) {
		c := len(n.ents) + len(n.ents)/8 + 2
		n.ents = append(make([]entry, 0, c), n.ents...)
		n.pos = append(make([]uint64, 0, c), n.pos...)
	}
	if len(n.keys)+len(key) > cap(n.keys) {
		n.compact(len(key))
	}
	off := len(n.keys)
	n.keys = append(n.keys, key...)
	n.ents = slices.Insert(n.ents, i, entry{off: uint32(off), n: uint32(len(key)), hash: h})
	n.pos = slices.Insert(n.pos, i, pos)
}

// remove deletes index i of the leaf, shrinking slices left mostly empty.
// The key's bytes stay in the arena until the next compaction.
func (n *node) remove(i int) {
	n.ents = slices.Delete(n.ents, i, i+1)
	n.pos = slices.Delete(n.pos, i, i+1)
	if cap(n.ents) > 16 && len(n.ents) < cap(n.ents)/4 {
		n.ents = slices.Clip(slices.Clone(n.ents))
		n.pos = slices.Clip(slices.Clone(n.pos))
		n.compact(0)
	}
}

// compact copies the live keys into a new arena with room for extra more
// bytes (and an eighth of slack), dropping the bytes of removed keys.
func (n *node) compact(extra int) {
	live := extra
	for i := range n.ents {
		live += int(n.ents[i].n)
	}
	keys := make([]byte, 0, live+live/8+16)
	for i := range n.ents {
		k := n.key(i)
		n.ents[i].off = uint32(len(keys))
		keys = append(keys, k...)
	}
	n.keys = keys
}

// Set records that key's current version has the given record digest
// (normally RecordDigest of it, tombstones included). Setting the digest a
// key already has changes nothing.
func (t *Tree) Set(key string, digest Digest) { t.Apply(Prepare(key, digest)) }

// Update is a Set prepared in advance: the hashing that is most of Set's
// cost, done by Prepare without the tree, so that a caller can hash while
// the tree is busy (or while the records are being stored) and hold the
// tree's lock only for Apply.
type Update struct {
	key  string
	pos  uint64
	hash Digest
}

// Prepare hashes a Set of key to digest for Apply.
func Prepare(key string, digest Digest) Update {
	return Update{key: key, pos: position(key), hash: EntryHash(key, digest)}
}

// PrepareRecord is Prepare(r.Key, RecordDigest(r)).
func PrepareRecord(r core.Record) Update { return Prepare(r.Key, RecordDigest(r)) }

// Apply performs a prepared Set: t.Apply(Prepare(k, d)) is t.Set(k, d).
func (t *Tree) Apply(u Update) { t.put(u.pos, u.key, u.hash) }

// Undo is what reverts one ApplyUndoable: the key's entry before it.
type Undo struct {
	key     string
	pos     uint64
	hash    Digest // the entry hash the key had, when it existed
	existed bool
}

// ApplyUndoable performs u like Apply and returns what reverts it, for a
// caller that updates the tree before the write it mirrors is known to
// have succeeded.
func (t *Tree) ApplyUndoable(u Update) Undo {
	old, existed := t.put(u.pos, u.key, u.hash)
	return Undo{key: u.key, pos: u.pos, hash: old, existed: existed}
}

// Revert undoes an ApplyUndoable. Undos of several updates must be
// reverted newest first; the tree then holds what it held before them.
func (t *Tree) Revert(un Undo) {
	if un.existed {
		t.put(un.pos, un.key, un.hash)
		return
	}
	t.deleteAt(un.pos, un.key)
}

// put sets key, at position pos, to entry hash h, and returns the entry
// hash the key had and whether it was present.
func (t *Tree) put(pos uint64, key string, h Digest) (Digest, bool) {
	var path [MaxDepth + 1]*node
	depth := t.descend(pos, &path)
	leaf := path[depth]
	i, found := leaf.search(pos, key)
	hv := sumOf(&h)
	if found {
		old := &leaf.ents[i].hash
		prev := *old
		if prev == h {
			return prev, true
		}
		ov := sumOf(old)
		*old = h
		for _, n := range path[:depth+1] {
			n.sum.add(&hv)
			n.sum.sub(&ov)
		}
		return prev, true
	}
	leaf.insert(i, pos, key, h)
	t.keyBytes += len(key)
	for _, n := range path[:depth+1] {
		n.sum.add(&hv)
		n.count++
	}
	if len(leaf.ents) > splitAt && depth < MaxDepth {
		leaf.split(depth)
	}
	return Digest{}, false
}

// Delete removes key and reports whether it was present. Records deleted by
// the host stay in the tree as tombstones (Set with the tombstone's
// digest); Delete is for keys that leave the collection entirely, such as
// purged tombstones or keys outside a partial replica.
func (t *Tree) Delete(key string) bool { return t.deleteAt(position(key), key) }

// deleteAt removes key, at position pos, and reports whether it was there.
func (t *Tree) deleteAt(pos uint64, key string) bool {
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
	var sizes, bytes [Fanout]int
	for i, p := range n.pos {
		sizes[nibble(p, d)]++
		bytes[nibble(p, d)] += int(n.ents[i].n)
	}
	kids := new([Fanout]node)
	for i := range kids {
		if sizes[i] > 0 {
			c := sizes[i] + sizes[i]/8 + 2
			kids[i].ents = make([]entry, 0, c)
			kids[i].pos = make([]uint64, 0, c)
			kids[i].keys = make([]byte, 0, bytes[i]+bytes[i]/8+16)
		}
	}
	for i, p := range n.pos {
		kids[nibble(p, d)].appendEntry(p, n.key(i), &n.ents[i].hash)
	}
	n.ents, n.pos, n.keys, n.kids = nil, nil, nil, kids
	if d+1 < MaxDepth {
		for i := range kids {
			if kids[i].count > splitAt {
				kids[i].split(d + 1)
			}
		}
	}
}

// appendEntry adds a key after every key of the leaf, adding its hash to
// the leaf's sum and count.
func (n *node) appendEntry(pos uint64, key []byte, h *Digest) {
	n.ents = append(n.ents, entry{off: uint32(len(n.keys)), n: uint32(len(key)), hash: *h})
	n.keys = append(n.keys, key...)
	n.pos = append(n.pos, pos)
	hv := sumOf(h)
	n.sum.add(&hv)
	n.count++
}

// collapse turns an inner node back into a leaf holding all its keys, in
// order. Its sum and count are unchanged.
func (n *node) collapse() {
	var leaf node
	c := n.count + n.count/4 + 1
	leaf.ents, leaf.pos = make([]entry, 0, c), make([]uint64, 0, c)
	n.walk(func(p uint64, key []byte, h *Digest) {
		leaf.appendEntry(p, key, h)
	})
	n.kids, n.ents, n.pos, n.keys = nil, leaf.ents, leaf.pos, leaf.keys
}

// walk calls fn for every entry under n in (position, key) order. The key
// is a view into the leaf, valid while the tree is not modified.
func (n *node) walk(fn func(pos uint64, key []byte, h *Digest)) {
	if n.kids == nil {
		for i := range n.ents {
			fn(n.pos[i], n.key(i), &n.ents[i].hash)
		}
		return
	}
	for i := range n.kids {
		n.kids[i].walk(fn)
	}
}
