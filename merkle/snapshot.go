package merkle

import (
	"encoding/binary"
	"fmt"

	"github.com/devicemesh/federation/core"
)

// snapshotMagic starts every snapshot; its last byte is the format version.
const snapshotMagic = "MKS1"

// SnapshotSize returns the length of the tree's snapshot encoding.
func (t *Tree) SnapshotSize() int {
	return len(snapshotMagic) + uvarintLen(uint64(t.Len())) + t.keyBytes + t.Len()*32 + 32 +
		t.varintBytes()
}

func (t *Tree) varintBytes() int {
	n := 0
	t.root.walk(func(_ uint64, key []byte, _ *Digest) { n += uvarintLen(uint64(len(key))) })
	return n
}

// AppendSnapshot appends a compact encoding of the tree to dst: "MKS1",
// uvarint(count), then per key in position order uvarint(len(key)) || key ||
// entry hash (32 bytes), then the root (32 bytes). A host that persists it
// at shutdown restores the tree with Restore without reading the records;
// a host that does not rebuilds it by calling Set for every record.
func (t *Tree) AppendSnapshot(dst []byte) []byte {
	dst = append(dst, snapshotMagic...)
	dst = binary.AppendUvarint(dst, uint64(t.Len()))
	t.root.walk(func(_ uint64, key []byte, h *Digest) {
		dst = binary.AppendUvarint(dst, uint64(len(key)))
		dst = append(dst, key...)
		dst = append(dst, h[:]...)
	})
	root := t.Root()
	return append(dst, root[:]...)
}

// Restore rebuilds a tree from AppendSnapshot's encoding in time linear in
// its size. It verifies the entries' order and that they hash to the
// recorded root, returning an error wrapping ErrCorrupt (and core.ErrCorrupt)
// otherwise. It never panics on bad input.
func Restore(b []byte) (*Tree, error) { return restore(b, restoreArena) }

// restoreArena bounds the key bytes Restore gathers in its first leaf
// (entries address their keys with 32-bit offsets); keys beyond it are
// inserted one by one.
const restoreArena = 1 << 30

func restore(b []byte, arenaLimit int) (*Tree, error) {
	d := decoder{b: b}
	if string(d.bytes(len(snapshotMagic))) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	n := d.count(len(b), 1+32)
	// One leaf with every entry, split once read: building costs
	// O(n * depth) and no search. Past arenaLimit bytes of keys the leaf
	// is split and the rest inserted as Set would.
	t := New()
	leaf := &t.root
	leaf.ents, leaf.pos = make([]entry, 0, n), make([]uint64, 0, n)
	var prevPos uint64
	var prevKey []byte
	for i := 0; i < n; i++ {
		k := d.uvarint()
		if k > core.MaxKeyLen {
			d.limit("key of %d bytes", k)
		}
		key := d.bytes(int(k))
		var h Digest
		copy(h[:], d.bytes(32))
		if d.err != nil {
			break
		}
		pos := position(key)
		if i > 0 && (pos < prevPos || pos == prevPos && string(key) <= string(prevKey)) {
			return nil, fmt.Errorf("%w: entries out of order at %d", ErrCorrupt, i)
		}
		prevPos, prevKey = pos, key
		if leaf != nil && len(leaf.keys)+len(key) <= arenaLimit {
			leaf.appendEntry(pos, key, &h)
			t.keyBytes += len(key)
			continue
		}
		if leaf != nil {
			if leaf.count > splitAt {
				leaf.split(0)
			}
			leaf = nil
		}
		t.put(pos, string(key), h)
	}
	var root Digest
	copy(root[:], d.bytes(32))
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if leaf != nil && leaf.count > splitAt {
		leaf.split(0)
	}
	if t.Root() != root {
		return nil, fmt.Errorf("%w: root mismatch", ErrCorrupt)
	}
	return t, nil
}
