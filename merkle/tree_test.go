package merkle

import (
	"strings"
	"testing"
)

// model is the obvious implementation the tree must agree with.
type model map[string]Digest

func (m model) summary(p Prefix) (int, Digest) {
	var s sum256
	n := 0
	for k, d := range m {
		if p.contains(position(k)) {
			h := EntryHash(k, d)
			v := sumOf(&h)
			s.add(&v)
			n++
		}
	}
	return n, s.digest()
}

func (m model) tree() *Tree {
	t := New()
	for k, d := range m {
		t.Set(k, d)
	}
	return t
}

// checkTree compares t with m: length, root, every node along the tree and
// a few below its leaves, and the structural invariants.
func checkTree(t tb, tr *Tree, m model) {
	t.Helper()
	if tr.Len() != len(m) {
		t.Fatalf("Len = %d, want %d", tr.Len(), len(m))
	}
	if got, want := tr.Root(), m.tree().Root(); got != want {
		t.Fatalf("root differs from a tree built from scratch")
	}
	for k, d := range m {
		if !tr.Has(k, d) {
			t.Fatalf("Has(%q) = false", k)
		}
		// The node of depth 5 on this key's path, usually below a leaf.
		p := PrefixOf(k, 5)
		n, h := m.summary(p)
		if s := tr.Summary(p); s.Count != n || s.Hash != h {
			t.Fatalf("Summary(%s) = %d %s, want %d %s", p, s.Count, s.Hash, n, h)
		}
		break
	}
	checkNode(t, &tr.root, 0, Prefix{}, m)
}

func checkNode(t tb, n *node, d int, p Prefix, m model) {
	t.Helper()
	count, h := m.summary(p)
	if n.count != count || n.sum.digest() != h {
		t.Fatalf("node %s: count %d sum %s, model %d %s", p, n.count, n.sum.digest(), count, h)
	}
	if n.kids == nil {
		if len(n.ents) != n.count || len(n.pos) != n.count {
			t.Fatalf("leaf %s holds %d entries, count %d", p, len(n.ents), n.count)
		}
		if len(n.ents) > splitAt && d < MaxDepth {
			t.Fatalf("leaf %s at depth %d holds %d > %d entries", p, d, len(n.ents), splitAt)
		}
		for i := range n.ents {
			if n.pos[i] != position(string(n.key(i))) || !p.contains(n.pos[i]) {
				t.Fatalf("leaf %s: wrong position for %q", p, n.key(i))
			}
			if i > 0 && cmpKey(n.pos[i-1], string(n.key(i-1)), n.pos[i], string(n.key(i))) >= 0 {
				t.Fatalf("leaf %s not sorted", p)
			}
		}
		return
	}
	if n.ents != nil || n.pos != nil || n.keys != nil {
		t.Fatalf("inner node %s has entries", p)
	}
	if d > 0 && n.count <= mergeAt {
		t.Fatalf("inner node %s with only %d keys was not merged", p, n.count)
	}
	for i := range n.kids {
		checkNode(t, &n.kids[i], d+1, p.Child(i), m)
	}
}

func TestTreeOperations(t *testing.T) {
	type op struct {
		del bool
		key string
		d   uint64
	}
	many := func(from, to int, del bool) []op {
		var ops []op
		for i := from; i < to; i++ {
			ops = append(ops, op{del: del, key: keyOf(i), d: uint64(i)})
		}
		return ops
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"empty", nil},
		{"one key", []op{{key: "a", d: 1}}},
		{"empty key", []op{{key: "", d: 1}}},
		{"overwrite", []op{{key: "a", d: 1}, {key: "a", d: 2}}},
		{"same digest twice", []op{{key: "a", d: 1}, {key: "a", d: 1}}},
		{"set then delete", []op{{key: "a", d: 1}, {del: true, key: "a"}}},
		{"delete missing", []op{{key: "a", d: 1}, {del: true, key: "b"}}},
		{"split root", many(0, splitAt+1, false)},
		{"split twice", many(0, 5000, false)},
		{"split then merge", append(many(0, 2000, false), many(10, 2000, true)...)},
		{"grow, shrink to nothing", append(many(0, 3000, false), many(0, 3000, true)...)},
		{"binary-ish keys", []op{{key: "\x00", d: 1}, {key: "\x00\x00", d: 2}, {key: strings.Repeat("\xff", 1024), d: 3}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// prepared takes every Set as Prepare then Apply.
			tr, prepared, m := New(), New(), model{}
			for _, o := range tc.ops {
				if o.del {
					_, had := m[o.key]
					if got := tr.Delete(o.key); got != had {
						t.Fatalf("Delete(%q) = %v, want %v", o.key, got, had)
					}
					prepared.Delete(o.key)
					delete(m, o.key)
				} else {
					tr.Set(o.key, digestOf(o.d))
					prepared.Apply(Prepare(o.key, digestOf(o.d)))
					m[o.key] = digestOf(o.d)
				}
			}
			checkTree(t, tr, m)
			checkTree(t, prepared, m)
			if len(m) == 0 && tr.Root() != New().Root() {
				t.Fatal("emptied tree has a different root from a new one")
			}
		})
	}
}

func TestTreeQueries(t *testing.T) {
	m := model{}
	for i := 0; i < 3000; i++ {
		m[keyOf(i)] = digestOf(uint64(i))
	}
	tr := m.tree()
	prefixes := []Prefix{{}, MakePrefix(3), MakePrefix(3, 7), MakePrefix(3, 7, 1), MakePrefix(3, 7, 1, 15, 2)}
	for _, p := range prefixes {
		t.Run(p.String(), func(t *testing.T) {
			n, h := m.summary(p)
			if s := tr.Summary(p); s.Prefix != p || s.Count != n || s.Hash != h {
				t.Fatalf("Summary = %+v, want %d %s", s, n, h)
			}
			kids := tr.Summaries([]Prefix{p})
			if len(kids) != Fanout {
				t.Fatalf("%d children", len(kids))
			}
			var total sum256
			count := 0
			for i, k := range kids {
				n, h := m.summary(p.Child(i))
				if k.Prefix != p.Child(i) || k.Count != n || k.Hash != h {
					t.Fatalf("child %d = %+v, want %d %s", i, k, n, h)
				}
				v := sumOf(&k.Hash)
				total.add(&v)
				count += k.Count
			}
			if count != n || total.digest() != h {
				t.Fatal("children do not add up to their parent")
			}
			keys := tr.Keys(p)
			if len(keys) != n {
				t.Fatalf("Keys: %d, want %d", len(keys), n)
			}
			for i, e := range keys {
				if !p.contains(position(e.Key)) || e.Hash != EntryHash(e.Key, m[e.Key]) {
					t.Fatalf("Keys[%d] = %+v is wrong", i, e)
				}
				if i > 0 && position(keys[i-1].Key) > position(e.Key) {
					t.Fatal("Keys not in position order")
				}
			}
		})
	}
	if got := tr.Summaries([]Prefix{prefixOfPos(1, MaxDepth)}); len(got) != 0 {
		t.Fatalf("MaxDepth prefix has %d children", len(got))
	}
	n := 0
	tr.Entries(func(Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Entries did not stop: %d", n)
	}
}

func TestPrefix(t *testing.T) {
	tests := []struct {
		p    Prefix
		str  string
		len  int
		in   uint64
		out  uint64
		wire []byte
	}{
		{Prefix{}, "root", 0, 0, 0, []byte{0}},
		{MakePrefix(0xa), "a", 1, 0xa0 << 56, 0xb0 << 56, []byte{1, 0xa0}},
		{MakePrefix(1, 2, 3), "123", 3, 0x1234 << 48, 0x1240 << 48, []byte{3, 0x12, 0x30}},
		{prefixOfPos(0x0123456789abcdef, 16), "0123456789abcdef", 16, 0x0123456789abcdef, 0x0123456789abcdee,
			[]byte{16, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}},
	}
	for _, tc := range tests {
		t.Run(tc.str, func(t *testing.T) {
			if tc.p.String() != tc.str || tc.p.Len() != tc.len {
				t.Fatalf("String/Len = %s/%d", tc.p, tc.p.Len())
			}
			if !tc.p.contains(tc.in) || (tc.len > 0 && tc.p.contains(tc.out)) {
				t.Fatal("contains is wrong")
			}
			if got := appendPrefix(nil, tc.p); string(got) != string(tc.wire) || len(got) != prefixLen(tc.p) {
				t.Fatalf("encoding %x, want %x", got, tc.wire)
			}
			d := decoder{b: tc.wire}
			if got := d.prefix(); got != tc.p || d.finish() != nil {
				t.Fatalf("decoded %v (%v)", got, d.err)
			}
		})
	}
	p := MakePrefix(4, 2)
	for j := 0; j < 256; j++ {
		if got, want := p.descendant(j, 2), p.Child(j>>4).Child(j&15); got != want {
			t.Fatalf("descendant(%d) = %s, want %s", j, got, want)
		}
	}
	if PrefixOf("x", 3) != prefixOfPos(position("x"), 3) || !PrefixOf("x", 3).contains(position("x")) {
		t.Fatal("PrefixOf")
	}
}
