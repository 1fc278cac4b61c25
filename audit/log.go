package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/devicemesh/federation/core"
)

// Backend stores audit entries. Implementations are safe for concurrent use;
// entries passed in and returned are copies owned by the receiver.
type Backend interface {
	// Last returns the entry with the highest sequence number, or ok false
	// when the log is empty.
	Last(ctx context.Context) (e Entry, ok bool, err error)
	// Insert stores e. It fails (without storing) when e.Seq is already
	// taken, so two writers cannot fork the chain.
	Insert(ctx context.Context, e Entry) error
	// Scan calls fn for every stored entry in ascending sequence order,
	// until fn returns an error, which Scan returns. A row that cannot be
	// decoded is reported as a *TamperError.
	Scan(ctx context.Context, fn func(Entry) error) error
	// Query returns the entries that match f, in ascending sequence order.
	Query(ctx context.Context, f Filter) ([]Entry, error)
}

// Filter selects entries for Log.Query. Zero fields do not filter.
type Filter struct {
	// From and To bound At to [From, To); zero means unbounded.
	From, To time.Time
	// Device keeps only entries about this device.
	Device core.DeviceID
	// Kinds keeps only entries of these kinds.
	Kinds []Kind
	// AfterSeq keeps only entries with a larger sequence number (paging).
	AfterSeq uint64
	// Limit stops after that many entries (0: no limit).
	Limit int
}

// Match reports whether e passes the filter (ignoring Limit).
func (f *Filter) Match(e *Entry) bool {
	if e.Seq <= f.AfterSeq {
		return false
	}
	if !f.From.IsZero() && e.At.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !e.At.Before(f.To) {
		return false
	}
	if !f.Device.IsZero() && e.Device != f.Device {
		return false
	}
	if len(f.Kinds) == 0 {
		return true
	}
	for _, k := range f.Kinds {
		if k == e.Kind {
			return true
		}
	}
	return false
}

// Head identifies the newest entry of a log: keep it where an attacker
// cannot rewrite it and VerifyHead detects even removed trailing rows.
type Head struct {
	Seq  uint64
	Hash Hash
}

// Options configure a Log.
type Options struct {
	// Clock stamps entries appended with a zero At (nil: system clock).
	Clock core.Clock
}

// Log is the tamper-evident audit log over one Backend. It is safe for
// concurrent use; appends are serialized so that the chain stays valid.
type Log struct {
	backend Backend
	clock   core.Clock

	mu     sync.Mutex
	loaded bool
	head   Head // newest entry known to this Log
	mine   Head // newest entry this Log appended (zero: none)
}

// New returns a Log writing to b.
func New(b Backend, opts Options) *Log {
	if opts.Clock == nil {
		opts.Clock = core.SystemClock{}
	}
	return &Log{backend: b, clock: opts.Clock}
}

// Append validates e, assigns its sequence number, time (when zero) and
// hashes, stores it and returns the stored entry. It blocks while another
// Append is in progress.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	if e.At.IsZero() {
		e.At = l.clock.Now()
	}
	e, err := normalize(e)
	if err != nil {
		return Entry{}, fmt.Errorf("audit append: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded {
		last, ok, err := l.backend.Last(ctx)
		if err != nil {
			return Entry{}, fmt.Errorf("audit append: %w", err)
		}
		if ok {
			l.head = Head{Seq: last.Seq, Hash: last.Hash}
		}
		l.loaded = true
	}
	e.Seq = l.head.Seq + 1
	e.PrevHash = l.head.Hash
	e.Hash = e.ComputeHash()
	if err := l.backend.Insert(ctx, e); err != nil {
		// Another writer may have extended the table: reload next time.
		l.loaded = false
		return Entry{}, fmt.Errorf("audit append: %w", err)
	}
	l.head = Head{Seq: e.Seq, Hash: e.Hash}
	l.mine = l.head
	return e, nil
}

// Head returns the newest entry of the log as stored now.
func (l *Log) Head(ctx context.Context) (Head, error) {
	last, ok, err := l.backend.Last(ctx)
	if err != nil || !ok {
		return Head{}, err
	}
	return Head{Seq: last.Seq, Hash: last.Hash}, nil
}

// Verify walks the whole chain and returns nil when it is intact, or a
// *TamperError (wrapping ErrTampered) naming the first row that was edited,
// inserted, reordered or deleted. It also detects removed trailing rows that
// this Log appended itself.
func (l *Log) Verify(ctx context.Context) error {
	l.mu.Lock()
	mine := l.mine
	l.mu.Unlock()
	return l.VerifyHead(ctx, mine)
}

// VerifyHead is Verify that also requires the log to contain the entry
// named by head (zero Head: no requirement), so that removing the newest
// rows is detected too.
func (l *Log) VerifyHead(ctx context.Context, head Head) error {
	var (
		want = uint64(1)
		prev Hash
	)
	err := l.backend.Scan(ctx, func(e Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case e.Seq != want:
			if e.Seq > want {
				return &TamperError{Seq: want, Reason: fmt.Sprintf("row missing (next row is %d)", e.Seq)}
			}
			return &TamperError{Seq: e.Seq, Reason: "sequence number out of order"}
		case e.PrevHash != prev:
			return &TamperError{Seq: e.Seq, Reason: "prev_hash does not match the previous row"}
		case e.ComputeHash() != e.Hash:
			return &TamperError{Seq: e.Seq, Reason: "hash does not match the row's contents"}
		case e.Seq == head.Seq && e.Hash != head.Hash:
			return &TamperError{Seq: e.Seq, Reason: "row differs from the remembered head"}
		}
		prev = e.Hash
		want++
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if head.Seq >= want {
		return fmt.Errorf("audit verify: %w", &TamperError{Seq: want, Reason: fmt.Sprintf("rows %d..%d missing from the end", want, head.Seq)})
	}
	return nil
}

// Query returns the entries matching f, oldest first.
func (l *Log) Query(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit < 0 {
		return nil, fmt.Errorf("audit query: %w: negative limit", core.ErrInvalidArgument)
	}
	es, err := l.backend.Query(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("audit query: %w", err)
	}
	return es, nil
}
