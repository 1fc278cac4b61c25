package merkle

import (
	"encoding/binary"
	"fmt"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/varint"
)

// Protocol limits, enforced by the decoders and by Validate. A peer that
// exceeds them gets ErrLimit. They bound the work and memory one request
// can cost the responder, and the size of its response: at most
// MaxSummaries node answers (a count varint and a fingerprint each: about
// 9 bytes with 8-byte fingerprints), listings cut at ListBudget bytes plus
// one key, and a few bytes per list item: about 1 MiB at most.
const (
	// MaxExpandItems is the most nodes one request may ask to expand.
	MaxExpandItems = 4096
	// MaxListItems is the most ranges one request may ask to list.
	MaxListItems = 4096
	// MaxExpandDepth is the most levels one expand item may descend.
	MaxExpandDepth = 3
	// MaxSummaries is the most node answers one request may ask for, summed
	// over its expand items (16^depth each).
	MaxSummaries = 1 << 16
	// ListBudget is roughly how many bytes of listing entries a response
	// carries before it cuts the remaining listings short (More set).
	ListBudget = 256 << 10
	// MinFPLen and MaxFPLen bound the fingerprint length a request may ask
	// for, in bytes.
	MinFPLen = 4
	MaxFPLen = 8
)

// Message tags: the first byte of every message, which doubles as a
// version number.
const (
	tagRequest  = 0xa1
	tagResponse = 0xa2
)

// Request is one round of reconciliation from the side that drives it (see
// Reconciler) to the side that answers it (Tree.Respond).
type Request struct {
	// Salt keys the fingerprints of this round. A Reconciler uses one salt
	// per session; a fresh salt per session keeps a truncation collision
	// from hiding the same difference twice.
	Salt uint64
	// FPLen is the fingerprint length in bytes, MinFPLen..MaxFPLen.
	FPLen int
	// HasRoot asks the responder to compare Root with its own root first and,
	// when they are equal, to answer only Converged.
	HasRoot bool
	// Root is the requester's root, meaningful when HasRoot is set.
	Root Digest
	// Expand lists nodes whose descendants Depth levels below are wanted.
	Expand []ExpandItem
	// List lists ranges whose keys are wanted.
	List []ListItem
}

// ExpandItem asks for the 16^Depth descendants of Prefix that lie Depth
// levels below it, in position order.
type ExpandItem struct {
	Prefix Prefix
	// Depth is 1..MaxExpandDepth, and Prefix.Len()+Depth <= MaxDepth.
	Depth int
}

// ListItem asks for the keys of the range Prefix, in (position, key) order,
// starting after the key After when HasAfter is set (a continuation of an
// earlier listing that was cut short).
type ListItem struct {
	Prefix   Prefix
	HasAfter bool
	After    string
}

// Response answers a Request; its shape follows the request's.
type Response struct {
	// Converged reports that the requester's root equals the responder's;
	// the response then carries nothing else.
	Converged bool
	// Nodes holds, for each expand item of the request, its 16^Depth
	// descendants in position order.
	Nodes [][]NodeFP
	// Lists holds, for each list item of the request, the keys found.
	Lists []Listing
}

// NodeFP is one node as seen by the responder: its key count and, when that
// is non-zero, the fingerprint of its hash.
type NodeFP struct {
	Count uint64
	FP    uint64
}

// Listing is the responder's keys in one listed range.
type Listing struct {
	Entries []KeyFP
	// More reports that the listing was cut short: ask again with After set
	// to the last entry's key (or, when Entries is empty, the same cursor).
	More bool
}

// KeyFP is one listed key with the fingerprint of its entry hash.
type KeyFP struct {
	Key string
	FP  uint64
}

// Validate checks the request against the protocol limits.
func (r *Request) Validate() error {
	if r.FPLen < MinFPLen || r.FPLen > MaxFPLen {
		return fmt.Errorf("%w: fingerprint length %d", ErrLimit, r.FPLen)
	}
	if len(r.Expand) > MaxExpandItems {
		return fmt.Errorf("%w: %d expand items", ErrLimit, len(r.Expand))
	}
	if len(r.List) > MaxListItems {
		return fmt.Errorf("%w: %d list items", ErrLimit, len(r.List))
	}
	total := 0
	for _, e := range r.Expand {
		if e.Depth < 1 || e.Depth > MaxExpandDepth || e.Prefix.Len()+e.Depth > MaxDepth {
			return fmt.Errorf("%w: expand %s by %d levels", ErrLimit, e.Prefix, e.Depth)
		}
		total += 1 << (4 * e.Depth)
	}
	if total > MaxSummaries {
		return fmt.Errorf("%w: %d node summaries", ErrLimit, total)
	}
	for _, l := range r.List {
		if len(l.After) > core.MaxKeyLen {
			return fmt.Errorf("%w: cursor key of %d bytes", ErrLimit, len(l.After))
		}
	}
	return nil
}

// Size returns the length of the request's encoding.
func (r *Request) Size() int {
	n := 1 + 8 + 1 + 1
	if r.HasRoot {
		n += 32
	}
	n += uvarintLen(uint64(len(r.Expand)))
	for _, e := range r.Expand {
		n += 1 + prefixLen(e.Prefix)
	}
	n += uvarintLen(uint64(len(r.List)))
	for _, l := range r.List {
		n += prefixLen(l.Prefix)
		if l.HasAfter {
			n += uvarintLen(uint64(len(l.After))+1) + len(l.After)
		} else {
			n++
		}
	}
	return n
}

// AppendBinary appends the request's encoding (see the package doc) to dst.
func (r *Request) AppendBinary(dst []byte) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return dst, err
	}
	dst = append(dst, tagRequest)
	dst = binary.LittleEndian.AppendUint64(dst, r.Salt)
	dst = append(dst, byte(r.FPLen))
	if r.HasRoot {
		dst = append(dst, 1)
		dst = append(dst, r.Root[:]...)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Expand)))
	for _, e := range r.Expand {
		dst = append(dst, byte(e.Depth))
		dst = appendPrefix(dst, e.Prefix)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.List)))
	for _, l := range r.List {
		dst = appendPrefix(dst, l.Prefix)
		if l.HasAfter {
			dst = binary.AppendUvarint(dst, uint64(len(l.After))+1)
			dst = append(dst, l.After...)
		} else {
			dst = append(dst, 0)
		}
	}
	return dst, nil
}

// DecodeRequest parses and validates a request. It never panics and
// allocates in proportion to len(b).
func DecodeRequest(b []byte) (*Request, error) {
	d := decoder{b: b}
	if tag := d.byte(); tag != tagRequest && d.err == nil {
		return nil, fmt.Errorf("%w: request tag %#x", ErrMalformed, tag)
	}
	r := &Request{Salt: d.u64(), FPLen: int(d.byte())}
	switch flags := d.byte(); flags {
	case 0:
	case 1:
		r.HasRoot = true
		copy(r.Root[:], d.bytes(32))
	default:
		d.fail("request flags %#x", flags)
	}
	n := d.count(MaxExpandItems, 2)
	if n > 0 {
		r.Expand = make([]ExpandItem, n)
	}
	for i := range r.Expand {
		r.Expand[i].Depth = int(d.byte())
		r.Expand[i].Prefix = d.prefix()
	}
	n = d.count(MaxListItems, 2)
	if n > 0 {
		r.List = make([]ListItem, n)
	}
	for i := range r.List {
		l := &r.List[i]
		l.Prefix = d.prefix()
		if c := d.uvarint(); c > 0 {
			if c-1 > core.MaxKeyLen {
				d.limit("cursor key of %d bytes", c-1)
			}
			l.HasAfter = true
			l.After = string(d.bytes(int(c - 1)))
		}
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	return r, nil
}

// Size returns the length of the response's encoding for a request whose
// fingerprints are fpLen bytes.
func (r *Response) Size(fpLen int) int {
	n := 2
	for _, nodes := range r.Nodes {
		for _, x := range nodes {
			n += uvarintLen(x.Count)
			if x.Count > 0 {
				n += fpLen
			}
		}
	}
	for _, l := range r.Lists {
		n += uvarintLen(uint64(len(l.Entries))<<1 | 1)
		for _, e := range l.Entries {
			n += uvarintLen(uint64(len(e.Key))) + len(e.Key) + fpLen
		}
	}
	return n
}

// AppendBinary appends the response's encoding (see the package doc) to
// dst. req is the request it answers; the shapes must match.
func (r *Response) AppendBinary(dst []byte, req *Request) ([]byte, error) {
	if err := r.matches(req); err != nil {
		return dst, err
	}
	dst = append(dst, tagResponse)
	if r.Converged {
		return append(dst, 1), nil
	}
	dst = append(dst, 0)
	for _, nodes := range r.Nodes {
		for _, x := range nodes {
			dst = binary.AppendUvarint(dst, x.Count)
			if x.Count > 0 {
				dst = appendFP(dst, x.FP, req.FPLen)
			}
		}
	}
	for _, l := range r.Lists {
		h := uint64(len(l.Entries)) << 1
		if l.More {
			h |= 1
		}
		dst = binary.AppendUvarint(dst, h)
		for _, e := range l.Entries {
			dst = binary.AppendUvarint(dst, uint64(len(e.Key)))
			dst = append(dst, e.Key...)
			dst = appendFP(dst, e.FP, req.FPLen)
		}
	}
	return dst, nil
}

// matches checks that r has the shape req calls for.
func (r *Response) matches(req *Request) error {
	if r.Converged {
		if len(r.Nodes) != 0 || len(r.Lists) != 0 {
			return fmt.Errorf("%w: converged response with content", ErrUnexpected)
		}
		return nil
	}
	if len(r.Nodes) != len(req.Expand) || len(r.Lists) != len(req.List) {
		return fmt.Errorf("%w: %d node sets and %d listings for %d and %d items",
			ErrUnexpected, len(r.Nodes), len(r.Lists), len(req.Expand), len(req.List))
	}
	for i, nodes := range r.Nodes {
		if len(nodes) != 1<<(4*req.Expand[i].Depth) {
			return fmt.Errorf("%w: %d nodes for expand item %d", ErrUnexpected, len(nodes), i)
		}
	}
	for _, l := range r.Lists {
		for _, e := range l.Entries {
			if len(e.Key) > core.MaxKeyLen {
				return fmt.Errorf("%w: key of %d bytes", ErrLimit, len(e.Key))
			}
		}
	}
	return nil
}

// DecodeResponse parses a response to req (which must be valid). It never
// panics and allocates in proportion to len(b) and req's expansions.
func DecodeResponse(b []byte, req *Request) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	d := decoder{b: b}
	if tag := d.byte(); tag != tagResponse && d.err == nil {
		return nil, fmt.Errorf("%w: response tag %#x", ErrMalformed, tag)
	}
	r := &Response{}
	switch flags := d.byte(); flags {
	case 0:
	case 1:
		r.Converged = true
		if err := d.finish(); err != nil {
			return nil, fmt.Errorf("decode response: %w", err)
		}
		return r, nil
	default:
		d.fail("response flags %#x", flags)
	}
	fp := req.FPLen
	// Every expansion and every listing takes a byte at least.
	if len(req.Expand)+len(req.List) > len(d.b) {
		d.fail("truncated: %d answers in %d bytes", len(req.Expand)+len(req.List), len(d.b))
		return nil, fmt.Errorf("decode response: %w", d.err)
	}
	r.Nodes = make([][]NodeFP, len(req.Expand))
	for i, e := range req.Expand {
		// Each node takes a byte at least: no more nodes than bytes left.
		if 1<<(4*e.Depth) > len(d.b) {
			d.fail("truncated: %d nodes in %d bytes", 1<<(4*e.Depth), len(d.b))
			break
		}
		nodes := make([]NodeFP, 1<<(4*e.Depth))
		for j := range nodes {
			if nodes[j].Count = d.uvarint(); nodes[j].Count > 0 {
				nodes[j].FP = d.fp(fp)
			}
		}
		r.Nodes[i] = nodes
		if d.err != nil {
			break
		}
	}
	r.Lists = make([]Listing, len(req.List))
	for i := range r.Lists {
		h := d.uvarint()
		l := &r.Lists[i]
		l.More = h&1 == 1
		n := d.check(h>>1, 1<<30, 1+fp)
		if n > 0 {
			l.Entries = make([]KeyFP, n)
		}
		for j := range l.Entries {
			k := d.uvarint()
			if k > core.MaxKeyLen {
				d.limit("key of %d bytes", k)
			}
			l.Entries[j].Key = string(d.bytes(int(k)))
			l.Entries[j].FP = d.fp(fp)
		}
		if d.err != nil {
			break
		}
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return r, nil
}

func appendFP(dst []byte, fp uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(fp>>(8*uint(i))))
	}
	return dst
}

func prefixLen(p Prefix) int { return 1 + (p.Len()+1)/2 }

func appendPrefix(dst []byte, p Prefix) []byte {
	dst = append(dst, byte(p.n))
	for i := 0; i < (p.Len()+1)/2; i++ {
		dst = append(dst, byte(p.bits>>(56-8*uint(i))))
	}
	return dst
}

func uvarintLen(x uint64) int { return varint.Len(x) }

// decoder reads a message, remembering the first error; reads after an
// error return zero values, so parsing code can check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) limit(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrLimit}, args...)...)
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.bytes(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := varint.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint (truncated, overflowing or not minimal)")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fp(n int) uint64 {
	var v uint64
	for _, c := range d.bytes(n) {
		v = v<<8 | uint64(c)
	}
	return v
}

// count reads an item count, refusing more than max and more than the remaining bytes could
// hold at minSize bytes an item (so a forged count cannot force a large
// allocation).
func (d *decoder) count(max, minSize int) int { return d.check(d.uvarint(), max, minSize) }

// check is count for a value already read.
func (d *decoder) check(v uint64, max, minSize int) int {
	if d.err != nil {
		return 0
	}
	if v > uint64(max) {
		d.limit("%d items", v)
		return 0
	}
	if v*uint64(minSize) > uint64(len(d.b)) {
		d.fail("truncated: %d items", v)
		return 0
	}
	return int(v)
}

func (d *decoder) prefix() Prefix {
	n := int(d.byte())
	if d.err != nil {
		return Prefix{}
	}
	if n > MaxDepth {
		d.fail("prefix of %d nibbles", n)
		return Prefix{}
	}
	raw := d.bytes((n + 1) / 2)
	var bits uint64
	for i, c := range raw {
		bits |= uint64(c) << (56 - 8*uint(i))
	}
	p := Prefix{bits: bits, n: uint8(n)}
	if p != prefixOfPos(bits, n) {
		d.fail("non-canonical prefix")
	}
	return p
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
