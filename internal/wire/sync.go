package wire

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/varint"
)

// Sync frame types (application range), spoken on the sync streams that
// package federation opens inside an authenticated session. Each side of a
// session opens one stream and sends on it; all integers are unsigned
// varints (uvarint, minimal: an over-long encoding is refused) unless
// stated. A device appears once in a dictionary and once in a version
// vector or causal context; a collection once in Roots.
//
//	SyncHello (0x10)  VV: what the sender already holds; then, optionally
//	                  (a hello that ends after the VV is valid too):
//	                  instance (8 bytes big-endian, random per run of the
//	                  sender's node: a new one means it restarted),
//	                  n (<= MaxHelloAddrs), n x address (len 1..MaxAddrLen
//	                  + bytes): where the sender listens for sessions
//	Changes   (0x11)  ndev, ndev x 32-byte device id (the dictionary),
//	                  n, n x change; a change is:
//	                    origin (dictionary index), seq, seq-TxnFirst, TxnLen,
//	                    timestamp (8 bytes big-endian HLC), flags (1 byte:
//	                    bit 0 tombstone, bit 1 stub, bit 2 summary),
//	                    collection (len+bytes), key (len+bytes),
//	                    context (m, m x (index, counter)), then
//	                    value (len+bytes), or for a stub the value's
//	                    size (uvarint, <= core.MaxValueLen) and its
//	                    32-byte SHA-256 (core.ValueDigest)
//	Ack       (0x12)  VV: what the receiver holds after applying
//	CaughtUp  (0x13)  VV, then Roots (below): the sender has sent everything
//	                  it holds up to VV, and these are its Merkle roots; with
//	                  no roots, VV claims only what it sent (it holds more,
//	                  of origins the receiver gets from other devices)
//	MerkleReq (0x14)  collection (len+bytes), then a merkle.Request
//	MerkleResp(0x15)  collection (len+bytes), then a merkle.Response
//	Records   (0x16)  as Changes, each record a one-change transaction
//	                  (TxnFirst = Seq, TxnLen = 1): current versions, not
//	                  changelog entries
//	Repair    (0x17)  empty: the sender starts a Merkle repair
//	Roots     (0x18)  n, n x (collection (len+bytes), 32-byte root)
//	Fetch     (0x19)  collection (len+bytes), n, n x key (len+bytes)
//	Repaired  (0x1A)  VV, count: the sender has pushed (count records) every
//	                  record in which it differed from the receiver as of VV
//	Direct    (0x1B)  VV whose devices (counters unused, 1) are the origins
//	                  the sender receives from the origin devices themselves:
//	                  the receiver forwards it none of their changes. Sent
//	                  right after SyncHello and again whenever the set changes
//	Priority  (0x1C)  as Changes, one whole transaction sent ahead of the
//	                  in-order stream of its origin (a higher priority than
//	                  the backlog before it): the receiver applies its records
//	                  now and commits it to its changelog when the stream
//	                  reaches it; the stream skips it
//	Want      (0x1D)  as Fetch: keys of one collection whose values the
//	                  sender holds as stubs and wants (selective sync)
//	Values    (0x1E)  collection (len+bytes), n, n x (key (len+bytes),
//	                  held (1 byte: 0 or 1), when held the version's origin
//	                  (32 bytes) and seq, then value (len+bytes)):
//	                  the answer to a Want, in one or more frames (each
//	                  about a batch's size), every key asked, in order; a
//	                  value is the sender's current version's, whole
//
// A VV is: count, then count x (32-byte device id, counter) in ascending
// device order.
const (
	TypeSyncHello  Type = 0x10 // sender's version vector: "this is what I hold"
	TypeChanges    Type = 0x11 // a batch of changelog entries
	TypeAck        Type = 0x12 // receiver's version vector after applying
	TypeCaughtUp   Type = 0x13 // sender has sent everything up to a vector
	TypeMerkleReq  Type = 0x14 // Merkle reconciliation request
	TypeMerkleResp Type = 0x15 // Merkle reconciliation response
	TypeRecords    Type = 0x16 // current record versions (Merkle repair, fetch)
	TypeRepair     Type = 0x17 // start of a Merkle repair: "send me your roots"
	TypeRoots      Type = 0x18 // Merkle roots of every collection that syncs
	TypeFetch      Type = 0x19 // keys whose current versions the sender wants
	TypeRepaired   Type = 0x1A // end of a repair: the receiver may raise its VV
	TypeDirect     Type = 0x1B // origins the sender gets from their own devices
	TypePriority   Type = 0x1C // a transaction sent ahead of its origin's stream
	TypeWant       Type = 0x1D // values the sender holds as stubs and wants (lane h24)
	TypeValues     Type = 0x1E // the answer to a Want (lane h24)
)

// AppendVV appends a version vector: count (uvarint), then per entry the
// 32-byte device id and the counter (uvarint), devices in ascending order.
func AppendVV(dst []byte, vv core.VersionVector) []byte {
	ds := vv.Devices()
	dst = binary.AppendUvarint(dst, uint64(len(ds)))
	for _, d := range ds {
		dst = append(dst, d[:]...)
		dst = binary.AppendUvarint(dst, vv[d])
	}
	return dst
}

// DecodeVV decodes a version vector written by AppendVV and returns the rest
// of b.
func DecodeVV(b []byte) (core.VersionVector, []byte, error) {
	d := decoder{b: b}
	n := d.count(33)
	vv := make(core.VersionVector, n)
	var prev core.DeviceID
	for i := 0; i < n && d.err == nil; i++ {
		id := d.device()
		c := d.uvarint()
		if i > 0 && id.Compare(prev) <= 0 {
			d.fail("version vector not in ascending device order")
		}
		prev = id
		vv[id] = c
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	return vv, d.b, nil
}

// DecodeRepaired decodes a Repaired payload: a version vector, then the
// count of records pushed (uvarint), and nothing after.
func DecodeRepaired(b []byte) (core.VersionVector, uint64, error) {
	vv, rest, err := DecodeVV(b)
	if err != nil {
		return nil, 0, err
	}
	d := decoder{b: rest}
	pushed := d.uvarint()
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, 0, d.err
	}
	return vv, pushed, nil
}

// AppendChanges appends the encoding of changes. Devices named in the batch
// (origins and causal contexts) are listed once in a dictionary and referred
// to by index.
func AppendChanges(dst []byte, changes []core.Change) []byte {
	// First pass: the device table, and the size of the whole encoding, so
	// that the batch is written straight into dst with one allocation at
	// most (a frame is megabytes; growing it by doubling would copy it
	// twice more).
	dict := map[core.DeviceID]uint64{}
	var devs []core.DeviceID
	idx := func(d core.DeviceID) uint64 {
		if i, ok := dict[d]; ok {
			return i
		}
		dict[d] = uint64(len(devs))
		devs = append(devs, d)
		return dict[d]
	}
	var ctxBuf [8]core.DeviceID
	size := 2 * binary.MaxVarintLen64
	for i := range changes {
		c := &changes[i]
		idx(c.Origin)
		for _, d := range contextDevices(&ctxBuf, c.Context) {
			idx(d)
		}
		// Fixed fields, three length prefixes, and up to 20 bytes per
		// context entry.
		size += 4*binary.MaxVarintLen64 + 9 + 3*binary.MaxVarintLen32 +
			len(c.Collection) + len(c.Key) + len(c.Value) + 20*len(c.Context) + 32
	}
	size += len(devs) * len(core.DeviceID{})
	dst = slices.Grow(dst, size)
	dst = binary.AppendUvarint(dst, uint64(len(devs)))
	for _, d := range devs {
		dst = append(dst, d[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(changes)))
	for i := range changes {
		c := &changes[i]
		dst = binary.AppendUvarint(dst, dict[c.Origin])
		dst = binary.AppendUvarint(dst, c.Seq)
		dst = binary.AppendUvarint(dst, c.Seq-c.TxnFirst)
		dst = binary.AppendUvarint(dst, uint64(c.TxnLen))
		dst = binary.BigEndian.AppendUint64(dst, uint64(c.Timestamp))
		var flags byte
		if c.Deleted {
			flags |= flagDeleted
		}
		if c.Stub {
			flags |= flagStub
		}
		if c.Summary {
			flags |= flagSummary
		}
		dst = append(dst, flags)
		dst = appendString(dst, c.Collection)
		dst = appendString(dst, c.Key)
		ds := contextDevices(&ctxBuf, c.Context)
		dst = binary.AppendUvarint(dst, uint64(len(ds)))
		for _, d := range ds {
			dst = binary.AppendUvarint(dst, dict[d])
			dst = binary.AppendUvarint(dst, c.Context[d])
		}
		if c.Stub {
			dst = binary.AppendUvarint(dst, uint64(c.ValueSize))
			dst = append(dst, c.ValueDigest[:]...)
			continue
		}
		dst = appendBytes(dst, c.Value)
	}
	return dst
}

// Flags of an encoded change.
const (
	flagDeleted = 1 << iota
	flagStub
	flagSummary
	flagsKnown = flagDeleted | flagStub | flagSummary
)

// DecodeChanges decodes a Changes payload. Values are copied out of b.
// A device listed twice in the dictionary, or named twice in one causal
// context, is refused; a context names at most every device of the
// dictionary, so a forged count cannot reserve more than the payload
// carries.
func DecodeChanges(b []byte) ([]core.Change, error) {
	d := decoder{b: b}
	ndev := d.count(32)
	devs := make([]core.DeviceID, 0, ndev)
	seen := make(map[core.DeviceID]struct{}, ndev)
	for i := 0; i < ndev && d.err == nil; i++ {
		id := d.device()
		if _, dup := seen[id]; dup && d.err == nil {
			d.fail("device listed twice in the dictionary")
		}
		seen[id] = struct{}{}
		devs = append(devs, id)
	}
	dev := func() core.DeviceID {
		i := d.uvarint()
		if d.err == nil && i >= uint64(len(devs)) {
			d.fail("device index out of range")
			return core.DeviceID{}
		}
		if d.err != nil {
			return core.DeviceID{}
		}
		return devs[i]
	}
	n := d.count(17) // the smallest encoded change
	out := make([]core.Change, 0, n)
	var lastColl string // a batch is mostly one collection: share its name
	for i := 0; i < n && d.err == nil; i++ {
		var c core.Change
		c.Origin = dev()
		c.Seq = d.uvarint()
		off := d.uvarint()
		if d.err == nil && (off >= c.Seq || c.Seq == 0) {
			d.fail("transaction offset beyond sequence")
		}
		c.TxnFirst = c.Seq - off
		txnLen := d.uvarint()
		if d.err == nil && (txnLen == 0 || txnLen > 1<<32-1 || off >= txnLen) {
			d.fail("bad transaction length")
		}
		c.TxnLen = uint32(txnLen)
		c.Timestamp = core.Timestamp(d.uint64())
		flags := d.byte()
		if flags&^flagsKnown != 0 {
			d.fail("unknown change flags")
		}
		c.Deleted = flags&flagDeleted != 0
		c.Stub = flags&flagStub != 0
		c.Summary = flags&flagSummary != 0
		if c.Stub && c.Deleted && d.err == nil {
			d.fail("tombstone sent as a stub")
		}
		if cb := d.bytes(core.MaxCollectionLen); string(cb) == lastColl {
			c.Collection = lastColl
		} else {
			c.Collection = string(cb)
			lastColl = c.Collection
		}
		c.Key = string(d.bytes(core.MaxKeyLen))
		nctx := d.count(2) // an index and a counter: two bytes at least
		if nctx > len(devs) && d.err == nil {
			d.fail("causal context longer than the device dictionary")
			nctx = 0
		}
		c.Context = make(core.VersionVector, nctx)
		for j := 0; j < nctx && d.err == nil; j++ {
			id := dev()
			if _, dup := c.Context[id]; dup && d.err == nil {
				d.fail("device named twice in a causal context")
			}
			c.Context[id] = d.uvarint()
		}
		if c.Stub {
			size := d.uvarint()
			if size > core.MaxValueLen && d.err == nil {
				d.fail("stub size beyond the value limit")
			}
			c.ValueSize = int(size)
			c.ValueDigest = d.device() // 32 bytes
			out = append(out, c)
			continue
		}
		v := d.bytes(core.MaxValueLen)
		switch {
		case c.Deleted && len(v) > 0:
			d.fail("tombstone carries a value")
		case !c.Deleted:
			c.Value = append(make([]byte, 0, len(v)), v...)
		}
		out = append(out, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

// AppendNamed appends a collection name followed by rest (MerkleReq,
// MerkleResp).
func AppendNamed(dst []byte, collection string, rest []byte) []byte {
	return append(appendBytes(dst, []byte(collection)), rest...)
}

// DecodeNamed splits a MerkleReq or MerkleResp payload; rest aliases b.
func DecodeNamed(b []byte) (collection string, rest []byte, err error) {
	d := decoder{b: b}
	c := d.bytes(core.MaxCollectionLen)
	if d.err != nil {
		return "", nil, d.err
	}
	if len(c) == 0 {
		return "", nil, fmt.Errorf("%w: empty collection name", core.ErrProtocol)
	}
	return string(c), d.b, nil
}

// AppendRoots appends a Roots payload, collections in ascending order.
func AppendRoots(dst []byte, roots map[string][32]byte) []byte {
	names := make([]string, 0, len(roots))
	for c := range roots {
		names = append(names, c)
	}
	slices.Sort(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, c := range names {
		r := roots[c]
		dst = appendBytes(dst, []byte(c))
		dst = append(dst, r[:]...)
	}
	return dst
}

// DecodeRoots decodes a Roots payload.
func DecodeRoots(b []byte) (map[string][32]byte, error) {
	d := decoder{b: b}
	n := d.count(34)
	out := make(map[string][32]byte, n)
	for i := 0; i < n && d.err == nil; i++ {
		c := d.bytes(core.MaxCollectionLen)
		root := d.device() // 32 bytes
		if d.err == nil && len(c) == 0 {
			d.fail("empty collection name")
		}
		if _, dup := out[string(c)]; dup && d.err == nil {
			d.fail("collection listed twice")
		}
		out[string(c)] = root
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

// AppendFetch appends a Fetch payload.
func AppendFetch(dst []byte, collection string, keys []string) []byte {
	dst = appendBytes(dst, []byte(collection))
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendBytes(dst, []byte(k))
	}
	return dst
}

// DecodeFetch decodes a Fetch payload. A key listed twice is refused.
func DecodeFetch(b []byte) (collection string, keys []string, err error) {
	d := decoder{b: b}
	c := d.bytes(core.MaxCollectionLen)
	n := d.count(1)
	keys = make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		keys = append(keys, string(d.bytes(core.MaxKeyLen)))
	}
	if d.err == nil && (len(c) == 0 || len(d.b) != 0) {
		d.fail("bad fetch")
	}
	if d.err == nil && len(keys) > 1 {
		// A key asked twice would be answered twice: refused.
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		if len(slices.Compact(sorted)) != len(keys) {
			d.fail("key asked twice")
		}
	}
	if d.err != nil {
		return "", nil, d.err
	}
	return string(c), keys, nil
}

// Value is one answer of a Values frame: Key's value, when Held, and the
// version it is the value of (Origin, Seq).
type Value struct {
	Key    string
	Held   bool
	Origin core.DeviceID
	Seq    uint64
	Value  []byte
}

// AppendValues appends a Values payload.
func AppendValues(dst []byte, collection string, vals []Value) []byte {
	dst = appendBytes(dst, []byte(collection))
	dst = binary.AppendUvarint(dst, uint64(len(vals)))
	for _, v := range vals {
		dst = appendString(dst, v.Key)
		if !v.Held {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = append(dst, v.Origin[:]...)
		dst = binary.AppendUvarint(dst, v.Seq)
		dst = appendBytes(dst, v.Value)
	}
	return dst
}

// DecodeValues decodes a Values payload; values are copied out of b. A
// count beyond what the payload can hold, a value beyond
// core.MaxValueLen, an unknown held byte or trailing bytes are refused.
func DecodeValues(b []byte) (collection string, vals []Value, err error) {
	d := decoder{b: b}
	c := d.bytes(core.MaxCollectionLen)
	n := d.count(2) // an empty key and a held byte
	vals = make([]Value, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		v := Value{Key: string(d.bytes(core.MaxKeyLen))}
		switch d.byte() {
		case 0:
		case 1:
			v.Held = true
			v.Origin = d.device()
			v.Seq = d.uvarint()
			raw := d.bytes(core.MaxValueLen)
			v.Value = append(make([]byte, 0, len(raw)), raw...)
		default:
			d.fail("bad held flag")
		}
		vals = append(vals, v)
	}
	if d.err == nil && (len(c) == 0 || len(d.b) != 0) {
		d.fail("bad values")
	}
	if d.err != nil {
		return "", nil, d.err
	}
	return string(c), vals, nil
}

// contextDevices returns the devices v names (with a count above zero) in
// ascending order, as VersionVector.Devices does, but in buf when they fit:
// a frame encodes one context per change.
func contextDevices(buf *[8]core.DeviceID, v core.VersionVector) []core.DeviceID {
	if len(v) > len(buf) {
		return v.Devices()
	}
	ds := buf[:0]
	for d, n := range v {
		if n > 0 {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, core.DeviceID.Compare)
	return ds
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// decoder reads primitives from a payload, remembering the first error so
// call sites stay linear. Every length is checked against what remains, so
// a hostile count can never make it allocate more than the payload size.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", core.ErrProtocol, msg)
	}
	d.b = nil
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

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail("short payload")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("short payload")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) device() core.DeviceID {
	var id core.DeviceID
	if d.err != nil || len(d.b) < len(id) {
		d.fail("short payload")
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[len(id):]
	return id
}

// count reads an element count and checks that that many elements of at
// least minSize bytes each could fit in what remains.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("count exceeds payload")
		return 0
	}
	return int(n)
}

// bytes reads a length-prefixed byte string of at most limit bytes; the
// result aliases the payload.
func (d *decoder) bytes(limit int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("byte string too long")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Bounds of the SyncHello's announcement.
const (
	// MaxHelloAddrs is the most addresses a SyncHello announces.
	MaxHelloAddrs = 8
	// MaxAddrLen is the longest announced address in bytes.
	MaxAddrLen = 255
)

// SyncHello is the first frame on a sync stream: what the sender holds,
// which run of its node this is, and where it can be dialled.
type SyncHello struct {
	VV core.VersionVector
	// Instance is random per start of the sender's node; 0 when the hello
	// carried none.
	Instance uint64
	// Addrs are the sender's listen addresses (at most MaxHelloAddrs, each
	// 1..MaxAddrLen bytes).
	Addrs []string
}

// AppendSyncHello appends h's encoding. Addresses beyond the bounds are
// left out.
func AppendSyncHello(dst []byte, h SyncHello) []byte {
	dst = AppendVV(dst, h.VV)
	if h.Instance == 0 && len(h.Addrs) == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint64(dst, h.Instance)
	var addrs []string
	for _, a := range h.Addrs {
		if a != "" && len(a) <= MaxAddrLen && len(addrs) < MaxHelloAddrs {
			addrs = append(addrs, a)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(addrs)))
	for _, a := range addrs {
		dst = appendString(dst, a)
	}
	return dst
}

// DecodeSyncHello decodes a SyncHello payload, with or without its
// optional part. Malformed input, trailing bytes and out-of-bounds
// addresses yield an error wrapping core.ErrProtocol.
func DecodeSyncHello(b []byte) (SyncHello, error) {
	vv, rest, err := DecodeVV(b)
	if err != nil {
		return SyncHello{}, err
	}
	h := SyncHello{VV: vv}
	if len(rest) == 0 {
		return h, nil
	}
	d := decoder{b: rest}
	h.Instance = d.uint64()
	n := d.count(2)
	if n > MaxHelloAddrs {
		d.fail("too many addresses")
	}
	for i := 0; i < n && d.err == nil; i++ {
		a := d.bytes(MaxAddrLen)
		if d.err == nil && len(a) == 0 {
			d.fail("empty address")
		}
		h.Addrs = append(h.Addrs, string(a))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes after sync hello")
	}
	if d.err != nil {
		return SyncHello{}, d.err
	}
	return h, nil
}
