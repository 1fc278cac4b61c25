package libsqlstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/devicemesh/federation/core"
)

// rowsPerInsert is how many rows one multi-row INSERT carries: the driver
// prepares every statement anew, so one statement per row costs about a
// third more CPU per row than 8 to 64 rows a statement (measured with
// BenchmarkCommit). The full-size statements are kept prepared instead
// and run on the writer's own SQLite handle (prepared.go: about 2 µs less
// CPU per row, and 1.7 µs more without libSQL's statement API); the
// remainder of a batch goes through the driver.
const rowsPerInsert = 64

// commitBuffers are scratch space reused by Commit (guarded by wmu).
type commitBuffers struct {
	args  []any
	enc   []byte // encodings of the rows being built
	stmts map[string]string
}

type dot struct {
	origin core.DeviceID
	seq    uint64
}

// plan is a validated batch: which changes are new, the resulting version
// vector entries, and where the new changes sit in the batch.
type plan struct {
	fresh []bool
	next  map[core.DeviceID]uint64
	byDot map[dot]int // index in b.Changes of each fresh change
}

// Commit implements core.Store. The whole batch is validated before
// anything is written, and written in one transaction. Beyond core's
// limits, changes need sequence numbers below 2^40 (ErrInvalidArgument).
// A batch whose changes are all already logged is a replay and changes
// nothing, not even its records.
func (s *Store) Commit(ctx context.Context, b core.Batch) error {
	if err := s.alive(ctx); err != nil {
		return err
	}
	if err := validateBatch(b); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.alive(ctx); err != nil {
		return err
	}
	// s.vv is only written under wmu, which we hold.
	p, err := planBatch(s.vv, b)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	adv := advances(s.vv, b, p)
	if len(p.next) == 0 && len(adv) == 0 && (len(b.Changes) > 0 || len(b.Records) == 0) {
		// Nothing new, or a replay whose records may be older than what
		// was written since: replaying changes nothing.
		return nil
	}
	added, first, err := s.dict.add(batchDevices(b))
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	err = s.inTx(ctx, func() error {
		if err := s.writeBatch(ctx, b, p, added, first); err != nil {
			return err
		}
		for _, d := range adv.Devices() {
			if err := s.advance(ctx, d, adv[d]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.dict.forget(added, first)
		return fmt.Errorf("commit: %w", err)
	}
	s.mu.Lock()
	for d, seq := range p.next {
		s.vv[d] = seq
	}
	for d, seq := range adv {
		s.vv[d] = seq
	}
	hw := vvSum(s.vv)
	s.mu.Unlock()
	if err := s.guard.raise(hw); err != nil {
		s.log.Warn("commit high-water", "err", err)
	}
	s.ckpt.committed(ctx, batchBytes(b, p))
	return nil
}

// batchBytes estimates what committing b writes: its new changes and its
// records, with a row's overhead each.
func batchBytes(b core.Batch, p plan) int {
	const row = 64
	n := 0
	for i := range b.Changes {
		if p.fresh[i] {
			c := &b.Changes[i]
			n += row + len(c.Collection) + len(c.Key) + len(c.Value) + 16*len(c.Context)
		}
	}
	for i := range b.Records {
		r := &b.Records[i]
		n += row + len(r.Collection) + len(r.Key)
		if len(b.Changes) == 0 {
			n += len(r.Value) // a repair's records are all written inline
		}
	}
	return n
}

func validateBatch(b core.Batch) error {
	for i := range b.Records {
		r := &b.Records[i]
		if err := r.Validate(); err != nil {
			return err
		}
	}
	for d, seq := range b.Advance {
		if d.IsZero() || seq > maxSeq {
			return fmt.Errorf("%w: advance of %s to %d", core.ErrInvalidArgument, d.Short(), seq)
		}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		if c.Origin.IsZero() || c.Seq == 0 {
			return fmt.Errorf("%w: change without origin or sequence", core.ErrInvalidArgument)
		}
		if c.Seq > maxSeq || c.TxnFirst > maxSeq {
			return fmt.Errorf("%w: sequence number %d out of range", core.ErrInvalidArgument, c.Seq)
		}
		if err := c.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// planBatch decides which changes are new given the version vector vv: a
// change at or below vv is already logged and skipped; one that would leave
// a gap refuses the whole batch.
func planBatch(vv core.VersionVector, b core.Batch) (plan, error) {
	p := plan{fresh: make([]bool, len(b.Changes)), next: map[core.DeviceID]uint64{}, byDot: make(map[dot]int, len(b.Changes))}
	for i := range b.Changes {
		c := &b.Changes[i]
		have, ok := p.next[c.Origin]
		if !ok {
			have = vv[c.Origin]
		}
		switch {
		case c.Seq <= have:
			continue
		case c.Seq != have+1:
			return p, fmt.Errorf("%w: change %d of %s leaves a gap after %d", core.ErrInvalidArgument, c.Seq, c.Origin.Short(), have)
		}
		p.next[c.Origin] = c.Seq
		p.fresh[i] = true
		p.byDot[dot{c.Origin, c.Seq}] = i
	}
	return p, nil
}

// batchDevices lists every device the batch's rows will refer to.
func batchDevices(b core.Batch) []core.DeviceID {
	seen := map[core.DeviceID]struct{}{}
	var out []core.DeviceID
	note := func(d core.DeviceID) {
		if _, ok := seen[d]; !ok {
			seen[d] = struct{}{}
			out = append(out, d)
		}
	}
	note2 := func(r *core.Record) {
		note(r.Origin)
		for d, n := range r.Context {
			if n > 0 {
				note(d)
			}
		}
	}
	for i := range b.Changes {
		note2(&b.Changes[i].Record)
	}
	for i := range b.Records {
		note2(&b.Records[i])
	}
	for d, n := range b.Advance {
		if n > 0 {
			note(d)
		}
	}
	return out
}

// writeBatch writes a planned batch inside the writer's transaction.
func (s *Store) writeBatch(ctx context.Context, b core.Batch, p plan, added []core.DeviceID, first int64) error {
	for i, id := range added {
		if _, err := s.w.ExecContext(ctx, "INSERT INTO devices (idx, id) VALUES (?, ?)", first+int64(i), id[:]); err != nil {
			return fmt.Errorf("add device: %w", err)
		}
	}
	install, inline := splitRecords(b, p)
	if err := s.insertChanges(ctx, b.Changes, p.fresh, install); err != nil {
		return err
	}
	if err := s.insertInline(ctx, b.Records, inline); err != nil {
		return err
	}
	for d, seq := range p.next {
		idx, _ := s.dict.index(d)
		_, err := s.w.ExecContext(ctx, "INSERT INTO vv (origin, seq) VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq", idx, int64(seq))
		if err != nil {
			return fmt.Errorf("raise version vector: %w", err)
		}
	}
	return nil
}

// Changelog ids pack the origin's dictionary index above the sequence
// number, so that one origin's changes are one contiguous id range and the
// table needs no second index.
const (
	seqBits = 40
	maxSeq  = 1<<seqBits - 1
	seqMask = maxSeq
)

func changeID(origin int64, seq uint64) int64 { return origin<<seqBits | int64(seq) }

// splitRecords decides how each record of b is stored. A record that is
// exactly a fresh change of the batch is installed by that change's row
// (install[j] for change j); the others are written inline (their indices
// in inline), among them a record with a change's dot whose timestamp or
// causal context differs from it. Only the last record of each key counts.
func splitRecords(b core.Batch, p plan) (install []bool, inline []int) {
	last := make(map[[2]string]int, len(b.Records))
	for i := range b.Records {
		last[[2]string{b.Records[i].Collection, b.Records[i].Key}] = i
	}
	install = make([]bool, len(b.Changes))
	for i := range b.Records {
		r := &b.Records[i]
		if last[[2]string{r.Collection, r.Key}] != i {
			continue
		}
		if j, ok := p.byDot[dot{r.Origin, r.Seq}]; ok && sameContent(r, &b.Changes[j].Record) {
			install[j] = true
			continue
		}
		inline = append(inline, i)
	}
	return install, inline
}

const changeCols = 5

// Flags of a changelog row.
const (
	flagDeleted   = 1
	flagInstalled = 2 // the change is its key's current version (trigger)
	flagStub      = 4 // held without its value: the value column is a stub envelope
	flagSummary   = 8 // the host marked the version as a summary
)

// kindFlags returns the stub and summary flags of r (changelog flags, and
// an inline record's kind column).
func kindFlags(r *core.Record) int {
	f := 0
	if r.Stub {
		f |= flagStub
	}
	if r.Summary {
		f |= flagSummary
	}
	return f
}

// stubEnvelope is what a stub stores in place of its value: uvarint(size),
// then the 32-byte value digest.
func stubEnvelope(r *core.Record) []byte {
	return append(binary.AppendUvarint(nil, uint64(r.ValueSize)), r.ValueDigest[:]...)
}

// setKind decodes the stub and summary flags (and a stub's envelope from
// value) into r.
func setKind(r *core.Record, flags int64, value []byte) error {
	r.Summary = flags&flagSummary != 0
	if flags&flagStub == 0 {
		return nil
	}
	size, n := binary.Uvarint(value)
	if n <= 0 || len(value) != n+32 || size > core.MaxValueLen {
		return fmt.Errorf("%w: bad stub of %s/%q", core.ErrCorrupt, r.Collection, r.Key)
	}
	r.Stub, r.ValueSize = true, int(size)
	copy(r.ValueDigest[:], value[n:])
	return nil
}

func (s *Store) insertChanges(ctx context.Context, cs []core.Change, fresh, install []bool) error {
	s.buf.args = s.buf.args[:0]
	s.buf.enc = s.buf.enc[:0]
	rows := 0
	for i := range cs {
		if !fresh[i] {
			continue
		}
		c := &cs[i]
		origin, _ := s.dict.index(c.Origin)
		flags := 0
		if c.Deleted {
			flags |= flagDeleted
		}
		flags |= kindFlags(&c.Record)
		if install[i] {
			flags |= flagInstalled
		}
		start := len(s.buf.enc)
		s.buf.enc = appendCK(s.buf.enc, c.Collection, c.Key)
		ck := s.cut(start)
		start = len(s.buf.enc)
		s.buf.enc = s.dict.appendChangeMeta(s.buf.enc, c)
		meta := s.cut(start)
		s.buf.args = append(s.buf.args, changeID(origin, c.Seq), ck, int64(flags), meta, valueArg(&c.Record))
		if rows++; rows == rowsPerInsert {
			if err := s.flush(ctx, stmtChanges, rows, changeCols); err != nil {
				return err
			}
			rows = 0
		}
	}
	return s.flush(ctx, stmtChanges, rows, changeCols)
}

// cut returns what was appended to the scratch buffer since start. Earlier
// cuts stay valid when appending reallocates: they keep the old array.
func (s *Store) cut(start int) []byte {
	return s.buf.enc[start:len(s.buf.enc):len(s.buf.enc)]
}

const inlineCols = 5

// insertInline writes the records at the given indices with their version
// inline.
func (s *Store) insertInline(ctx context.Context, rs []core.Record, which []int) error {
	s.buf.args = s.buf.args[:0]
	s.buf.enc = s.buf.enc[:0]
	rows := 0
	for _, i := range which {
		r := &rs[i]
		origin, _ := s.dict.index(r.Origin)
		start := len(s.buf.enc)
		s.buf.enc = appendCK(s.buf.enc, r.Collection, r.Key)
		ck := s.cut(start)
		start = len(s.buf.enc)
		s.buf.enc = appendRecordMeta(s.buf.enc, r.Timestamp, origin, r.Seq, s.dict.encodeContext(nil, r.Context))
		meta := s.cut(start)
		s.buf.args = append(s.buf.args, ck, r.Deleted, meta, valueArg(r), int64(kindFlags(r)))
		if rows++; rows == rowsPerInsert {
			if err := s.flush(ctx, stmtInline, rows, inlineCols); err != nil {
				return err
			}
			rows = 0
		}
	}
	return s.flush(ctx, stmtInline, rows, inlineCols)
}

// valueArg is the value column of a record: NULL for a tombstone, else
// the bytes (an empty slice stays an empty BLOB).
func valueArg(r *core.Record) any {
	if r.Deleted {
		return nil
	}
	if r.Stub {
		return stubEnvelope(r)
	}
	if r.Value == nil {
		return []byte{}
	}
	return r.Value
}

// sameContent reports whether record r is exactly change c's version, so
// that c's changelog row can stand for it: a resolution that keeps the
// change's value but merges causal contexts is a different version, and
// the store must hold what the node's Merkle tree hashed.
func sameContent(r, c *core.Record) bool {
	return r.Collection == c.Collection && r.Key == c.Key && r.Deleted == c.Deleted &&
		r.Timestamp == c.Timestamp && r.Context.Compare(c.Context) == core.Equal &&
		r.Stub == c.Stub && r.Summary == c.Summary && r.ValueDigest == c.ValueDigest && r.ValueSize == c.ValueSize &&
		(r.Deleted || bytes.Equal(r.Value, c.Value))
}

// flush executes the multi-row INSERT for the rows accumulated in
// s.buf.args and empties it.
func (s *Store) flush(ctx context.Context, head string, rows, cols int) error {
	if rows == 0 {
		return nil
	}
	if err := s.execArgs(ctx, s.insertSQL(head, rows, cols), rows == rowsPerInsert); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	clear(s.buf.args) // drop references to the caller's values
	s.buf.args = s.buf.args[:0]
	return nil
}

// execArgs executes query with s.buf.args on the writer: a hot statement
// through the statements kept prepared (prepared.go) unless the driver's
// connection is not what they need, anything else through database/sql.
func (s *Store) execArgs(ctx context.Context, query string, hot bool) error {
	if hot && !s.noPrep {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.prep.exec(s.w, query, s.buf.args)
		if s.prep.rawErr != nil {
			s.log.Warn("hot inserts through libSQL's statements", "err", s.prep.rawErr)
			s.prep.rawErr = nil
		}
		switch {
		case errors.Is(err, errNoNativeConn):
			s.log.Warn("statements prepared anew for every execution", "err", err)
			s.noPrep = true
		case errors.Is(err, errNotPreparable):
		default:
			return err
		}
	}
	_, err := s.w.ExecContext(ctx, query, s.buf.args...)
	return err
}

// Heads of the multi-row INSERT statements.
const (
	stmtChanges = "INSERT INTO changelog (id, ck, flags, meta, value) VALUES "
	stmtInline  = "INSERT OR REPLACE INTO records (ck, deleted, meta, value, kind) VALUES "
)

// insertSQL returns head followed by rows placeholders of cols values.
func (s *Store) insertSQL(head string, rows, cols int) string {
	key := fmt.Sprintf("%s/%d", head, rows)
	if q, ok := s.buf.stmts[key]; ok {
		return q
	}
	var sb strings.Builder
	sb.WriteString(head)
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	if s.buf.stmts == nil {
		s.buf.stmts = map[string]string{}
	}
	s.buf.stmts[key] = sb.String()
	return s.buf.stmts[key]
}
