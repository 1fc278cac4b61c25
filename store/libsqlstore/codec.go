package libsqlstore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/devicemesh/federation/core"
)

// dictionary maps device ids to the small integers stored in rows. Entries
// are only ever added (under the store's write mutex); readers look up under
// the read lock.
type dictionary struct {
	mu    sync.RWMutex
	byID  map[core.DeviceID]int64
	byIdx map[int64]core.DeviceID
	next  int64
}

func newDictionary() *dictionary {
	return &dictionary{byID: map[core.DeviceID]int64{}, byIdx: map[int64]core.DeviceID{}, next: 1}
}

func (d *dictionary) load(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "SELECT idx, id FROM devices")
	if err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	defer rows.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	for rows.Next() {
		var idx int64
		var id []byte
		if err := rows.Scan(&idx, &id); err != nil {
			return fmt.Errorf("load devices: %w", err)
		}
		if len(id) != len(core.DeviceID{}) || idx <= 0 {
			return fmt.Errorf("load devices: %w: bad device entry %d", core.ErrCorrupt, idx)
		}
		dev := core.DeviceID(id)
		d.byID[dev] = idx
		d.byIdx[idx] = dev
		d.next = max(d.next, idx+1)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load devices: %w", err)
	}
	return nil
}

// index returns id's number, if it has one.
func (d *dictionary) index(id core.DeviceID) (int64, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	idx, ok := d.byID[id]
	return idx, ok
}

// device returns the id numbered idx.
func (d *dictionary) device(idx int64) (core.DeviceID, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.byIdx[idx]
	if !ok {
		return id, fmt.Errorf("%w: unknown device index %d", core.ErrCorrupt, idx)
	}
	return id, nil
}

// maxDevices bounds dictionary indices so that changelog ids (index << 40 |
// seq) stay positive 63-bit integers.
const maxDevices = 1<<22 - 1

// add numbers the ids that have no number yet and returns them with their
// new numbers, in order. The caller must insert them into the devices table
// in the same transaction and call forget if that transaction fails. Rows
// using the new numbers are invisible to readers until it commits, so
// adding before the commit is safe.
func (d *dictionary) add(ids []core.DeviceID) (added []core.DeviceID, first int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	first = d.next
	for _, id := range ids {
		if _, ok := d.byID[id]; ok {
			continue
		}
		if d.next > maxDevices {
			d.forgetLocked(added, first)
			return nil, first, fmt.Errorf("%w: more than %d devices", core.ErrInvalidArgument, maxDevices)
		}
		d.byID[id] = d.next
		d.byIdx[d.next] = id
		d.next++
		added = append(added, id)
	}
	return added, first, nil
}

// forget undoes add after a failed transaction.
func (d *dictionary) forget(added []core.DeviceID, first int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forgetLocked(added, first)
}

func (d *dictionary) forgetLocked(added []core.DeviceID, first int64) {
	for _, id := range added {
		delete(d.byIdx, d.byID[id])
		delete(d.byID, id)
	}
	if len(added) > 0 {
		d.next = first
	}
}

type vvEntry struct{ idx, n int64 }

// encodeContext appends the compact form of v to dst. Every device of v
// must be in the dictionary (Commit adds them first).
func (d *dictionary) encodeContext(dst []byte, v core.VersionVector) []byte {
	var stack [8]vvEntry
	es := stack[:0]
	d.mu.RLock()
	for id, n := range v {
		if n > 0 {
			es = append(es, vvEntry{d.byID[id], int64(n)})
		}
	}
	d.mu.RUnlock()
	slices.SortFunc(es, func(a, b vvEntry) int { return int(a.idx - b.idx) })
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	prev := int64(0)
	for _, e := range es {
		dst = binary.AppendUvarint(dst, uint64(e.idx-prev))
		dst = binary.AppendUvarint(dst, uint64(e.n))
		prev = e.idx
	}
	return dst
}

// decodeContext parses a context written by encodeContext. Anything else
// yields core.ErrCorrupt.
func (d *dictionary) decodeContext(b []byte) (core.VersionVector, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, fmt.Errorf("%w: context: bad length", core.ErrCorrupt)
	}
	b = b[k:]
	if n > uint64(len(b))/2 {
		return nil, fmt.Errorf("%w: context: %d entries in %d bytes", core.ErrCorrupt, n, len(b))
	}
	v := make(core.VersionVector, n)
	d.mu.RLock()
	defer d.mu.RUnlock()
	idx := uint64(0)
	for i := uint64(0); i < n; i++ {
		delta, k := binary.Uvarint(b)
		if k <= 0 || delta == 0 || delta > 1<<62-idx {
			return nil, fmt.Errorf("%w: context: bad device index", core.ErrCorrupt)
		}
		b = b[k:]
		seq, k := binary.Uvarint(b)
		if k <= 0 || seq == 0 {
			return nil, fmt.Errorf("%w: context: bad counter", core.ErrCorrupt)
		}
		b = b[k:]
		idx += delta
		id, ok := d.byIdx[int64(idx)]
		if !ok {
			return nil, fmt.Errorf("%w: context: unknown device index %d", core.ErrCorrupt, idx)
		}
		v[id] = seq
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: context: %d trailing bytes", core.ErrCorrupt, len(b))
	}
	return v, nil
}

// appendCK appends the row key of (coll, key): uvarint(len(coll)), coll,
// key. Uvarints are prefix-free, so the keys of one collection are exactly
// the row keys starting with appendCK(coll, ""), in the order of key.
func appendCK(dst []byte, coll, key string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(coll)))
	dst = append(dst, coll...)
	return append(dst, key...)
}

// splitCK is the inverse of appendCK.
func splitCK(ck []byte) (coll, key string, err error) {
	n, k := binary.Uvarint(ck)
	var canonical [binary.MaxVarintLen64]byte
	if k <= 0 || n > uint64(len(ck)-k) || binary.PutUvarint(canonical[:], n) != k {
		return "", "", fmt.Errorf("%w: bad row key", core.ErrCorrupt)
	}
	return string(ck[k : k+int(n)]), string(ck[k+int(n):]), nil
}

// changeMeta is what a changelog row packs in its meta column.
type changeMeta struct {
	ts            core.Timestamp
	first, length uint64
	ctx           []byte // encoded context
}

// appendChangeMeta appends uvarint(ts), uvarint(txn first),
// uvarint(txn length), then the encoded context of c.
func (d *dictionary) appendChangeMeta(dst []byte, c *core.Change) []byte {
	dst = binary.AppendUvarint(dst, uint64(c.Timestamp))
	dst = binary.AppendUvarint(dst, c.TxnFirst)
	dst = binary.AppendUvarint(dst, uint64(c.TxnLen))
	return d.encodeContext(dst, c.Context)
}

func parseChangeMeta(b []byte) (changeMeta, error) {
	var m changeMeta
	var vals [3]uint64
	for i := range vals {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return m, fmt.Errorf("%w: bad change metadata", core.ErrCorrupt)
		}
		vals[i], b = v, b[k:]
	}
	if vals[2] > 1<<32-1 {
		return m, fmt.Errorf("%w: bad transaction length", core.ErrCorrupt)
	}
	m.ts, m.first, m.length, m.ctx = core.Timestamp(vals[0]), vals[1], vals[2], b
	return m, nil
}

// recordMeta is what an inline record row packs in its meta column.
type recordMeta struct {
	ts     core.Timestamp
	origin int64
	seq    uint64
	ctx    []byte // encoded context
}

// appendRecordMeta appends uvarint(ts), uvarint(origin index),
// uvarint(seq), then the encoded context.
func appendRecordMeta(dst []byte, ts core.Timestamp, origin int64, seq uint64, ctx []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(ts))
	dst = binary.AppendUvarint(dst, uint64(origin))
	dst = binary.AppendUvarint(dst, seq)
	return append(dst, ctx...)
}

func parseRecordMeta(b []byte) (recordMeta, error) {
	var m recordMeta
	var vals [3]uint64
	for i := range vals {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return m, fmt.Errorf("%w: bad record metadata", core.ErrCorrupt)
		}
		vals[i], b = v, b[k:]
	}
	if vals[1] > maxDevices {
		return m, fmt.Errorf("%w: bad origin index", core.ErrCorrupt)
	}
	m.ts, m.origin, m.seq, m.ctx = core.Timestamp(vals[0]), int64(vals[1]), vals[2], b
	return m, nil
}
