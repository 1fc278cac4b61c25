package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/devicemesh/federation/core"
)

// MaxMessageID bounds the length of a message id in bytes.
const MaxMessageID = 256

// Message is one entry of an ordered log, such as a conversation turn.
type Message struct {
	// ID identifies the message across devices; it must be unique and
	// non-empty (the host typically uses a random or content-derived id).
	ID string
	// Time is the hybrid logical clock time the message was written; it
	// fixes the message's place in the log.
	Time core.Timestamp
	// Device is the device that wrote the message.
	Device core.DeviceID
	// Edited is the time of the latest edit or deletion (0: never edited).
	Edited core.Timestamp
	// Editor is the device that made the latest edit (zero when Edited is 0).
	Editor core.DeviceID
	// Deleted marks a message removed by an edit; its Body is empty.
	Deleted bool
	// Body is the message payload.
	Body []byte
}

// compareMessageOrder orders messages in the log: by Time, then Device,
// then ID.
func compareMessageOrder(a, b *Message) int {
	switch {
	case a.Time != b.Time:
		if a.Time < b.Time {
			return -1
		}
		return 1
	case a.Device != b.Device:
		return a.Device.Compare(b.Device)
	}
	return strings.Compare(a.ID, b.ID)
}

// compareMessageVersion orders two versions of the same message id for
// last-writer-wins: by edit time, then editor, then every other field, so
// the winner is a pure function of the two versions.
func compareMessageVersion(a, b *Message) int {
	switch {
	case a.Edited != b.Edited:
		if a.Edited < b.Edited {
			return -1
		}
		return 1
	case a.Editor != b.Editor:
		return a.Editor.Compare(b.Editor)
	case a.Deleted != b.Deleted:
		if b.Deleted {
			return -1
		}
		return 1
	}
	if c := compareMessageOrder(a, b); c != 0 {
		return c
	}
	return bytes.Compare(a.Body, b.Body)
}

// Log is an ordered, mergeable log of messages, used for conversation
// history: the merge is the union of both logs, ordered by (Time, Device,
// ID) and deduplicated by ID; two versions of one message (an edit or a
// deletion) are settled last-writer-wins by (Edited, Editor). The zero
// value is an empty log.
//
// Encoding: tag 0x07, version 0x01, a device table (uvarint count, 32-byte
// ids ascending, each used by some message), a uvarint message count, then
// per message in log order: the ID as uvarint length plus bytes, Time as 8
// bytes big-endian, the author's device index (uvarint), a flags byte (bit
// 0: edited, bit 1: deleted), when edited the edit time as 8 bytes and the
// editor's device index, and the body as uvarint length plus bytes (empty
// when deleted).
type Log struct {
	msgs []Message // log order, ids unique
}

func (m *Message) normalize() {
	if m.Edited == 0 {
		m.Editor = core.DeviceID{}
	}
	if m.Deleted {
		m.Body = nil
	}
}

func checkMessage(m *Message) error {
	if m.ID == "" || len(m.ID) > MaxMessageID {
		return fmt.Errorf("%w: message id length %d outside 1..%d", ErrInvalidArgument, len(m.ID), MaxMessageID)
	}
	return nil
}

// Append adds m (copied) to the log. If a message with the same ID is
// present, the two versions are settled last-writer-wins, as in Merge.
func (l *Log) Append(m Message) error {
	if err := checkMessage(&m); err != nil {
		return fmt.Errorf("log append: %w", err)
	}
	m.Body = slices.Clone(m.Body)
	m.normalize()
	l.Merge(&Log{msgs: []Message{m}})
	return nil
}

// Edit replaces the body of message id, as of edit time ts by device dev.
// The edit takes effect only if it is newer than the message's latest
// version. It returns ErrUnknownMessage if the log does not hold id.
func (l *Log) Edit(id string, body []byte, ts core.Timestamp, dev core.DeviceID) error {
	return l.edit(id, body, false, ts, dev)
}

// Delete marks message id as deleted (its body is dropped, its place in the
// log remains as a tombstone so the deletion propagates).
func (l *Log) Delete(id string, ts core.Timestamp, dev core.DeviceID) error {
	return l.edit(id, nil, true, ts, dev)
}

func (l *Log) edit(id string, body []byte, deleted bool, ts core.Timestamp, dev core.DeviceID) error {
	m, ok := l.Get(id)
	if !ok {
		return fmt.Errorf("log edit %q: %w", id, ErrUnknownMessage)
	}
	if ts == 0 {
		return fmt.Errorf("log edit: %w: zero edit time", ErrInvalidArgument)
	}
	m.Edited, m.Editor, m.Deleted, m.Body = ts, dev, deleted, body
	return l.Append(m)
}

// Get returns the current version of message id (its Body is a copy).
func (l *Log) Get(id string) (Message, bool) {
	for _, m := range l.msgs {
		if m.ID == id {
			m.Body = slices.Clone(m.Body)
			return m, true
		}
	}
	return Message{}, false
}

// Messages returns the messages in log order, deleted ones included. The
// caller must not modify the bodies.
func (l *Log) Messages() []Message { return slices.Clone(l.msgs) }

// Len returns the number of messages, deleted ones included.
func (l *Log) Len() int { return len(l.msgs) }

// Merge folds o into l: union by ID, last-writer-wins per ID, log order.
// It does not retain o's slices.
func (l *Log) Merge(o *Log) {
	if len(o.msgs) == 0 {
		return
	}
	// Bodies taken from o are copied into one arena, sized up front so that
	// appending never moves it.
	size := 0
	for i := range o.msgs {
		size += len(o.msgs[i].Body)
	}
	arena := make([]byte, 0, size)
	own := func(m Message) Message {
		if len(m.Body) == 0 {
			m.Body = nil
			return m
		}
		start := len(arena)
		arena = append(arena, m.Body...)
		m.Body = arena[start:len(arena):len(arena)]
		return m
	}
	out := make([]Message, 0, len(l.msgs)+len(o.msgs))
	i, j := 0, 0
	for i < len(l.msgs) || j < len(o.msgs) {
		var c int
		switch {
		case i == len(l.msgs):
			c = 1
		case j == len(o.msgs):
			c = -1
		default:
			c = compareMessageOrder(&l.msgs[i], &o.msgs[j])
		}
		switch {
		case c < 0:
			out = append(out, l.msgs[i])
			i++
		case c > 0:
			out = append(out, own(o.msgs[j]))
			j++
		default:
			if compareMessageVersion(&o.msgs[j], &l.msgs[i]) > 0 {
				out = append(out, own(o.msgs[j]))
			} else {
				out = append(out, l.msgs[i])
			}
			i++
			j++
		}
	}
	l.msgs = dedupeIDs(out)
}

// hasDuplicateID reports whether two messages share an id.
func hasDuplicateID(msgs []Message) bool {
	ids := make([]string, len(msgs))
	for i := range msgs {
		ids[i] = msgs[i].ID
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return true
		}
	}
	return false
}

// dedupeIDs removes duplicate ids that sit at different places in the log
// (two versions of a message whose Time or Device differ, which only a
// misbehaving device produces), keeping the last-writer-wins version.
func dedupeIDs(msgs []Message) []Message {
	if !hasDuplicateID(msgs) {
		return msgs
	}
	seen := make(map[string]int, len(msgs))
	for i := range msgs {
		if k, ok := seen[msgs[i].ID]; !ok || compareMessageVersion(&msgs[i], &msgs[k]) > 0 {
			seen[msgs[i].ID] = i
		}
	}
	out := msgs[:0]
	for i, m := range msgs {
		if seen[m.ID] == i {
			out = append(out, m)
		}
	}
	return out
}

// Clone returns an independent copy.
func (l *Log) Clone() *Log {
	c := &Log{msgs: slices.Clone(l.msgs)}
	for i := range c.msgs {
		c.msgs[i].Body = slices.Clone(c.msgs[i].Body)
	}
	return c
}

const (
	flagEdited  = 1 << 0
	flagDeleted = 1 << 1
)

// Encode returns the canonical encoding.
func (l *Log) Encode() []byte {
	ds, size := l.devices()
	e := newEnc(tagLog, size)
	e.devices(ds)
	e.uvarint(uint64(len(l.msgs)))
	for i := range l.msgs {
		m := &l.msgs[i]
		e.str(m.ID)
		e.timestamp(m.Time)
		e.uvarint(uint64(deviceIndex(ds, m.Device)))
		var flags byte
		if m.Edited != 0 {
			flags |= flagEdited
		}
		if m.Deleted {
			flags |= flagDeleted
		}
		e.byte1(flags)
		if m.Edited != 0 {
			e.timestamp(m.Edited)
			e.uvarint(uint64(deviceIndex(ds, m.Editor)))
		}
		e.bytes(m.Body)
	}
	return e.b
}

// devices returns the log's device table and an upper bound of its
// encoded size. A conversation involves few devices, so they are collected
// by linear search while there are few, without a per-message allocation.
func (l *Log) devices() ([]core.DeviceID, int) {
	const few = 16
	ds := make([]core.DeviceID, 0, 4)
	add := func(d core.DeviceID) {
		if len(ds) <= few && !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	size := 8
	for i := range l.msgs {
		m := &l.msgs[i]
		add(m.Device)
		if m.Edited != 0 {
			add(m.Editor)
		}
		size += len(m.ID) + len(m.Body) + 30
	}
	if len(ds) > few {
		ds = ds[:0]
		for i := range l.msgs {
			ds = append(ds, l.msgs[i].Device)
			if l.msgs[i].Edited != 0 {
				ds = append(ds, l.msgs[i].Editor)
			}
		}
	}
	ds = sortedDevices(ds)
	return ds, size + 32*len(ds)
}

// DecodeLog decodes a Log encoding. An empty input is the empty log.
func DecodeLog(b []byte) (*Log, error) {
	l := &Log{}
	if len(b) == 0 {
		return l, nil
	}
	d := newDec(b, tagLog)
	// One copy of the input backs every id and one every body, instead of
	// an allocation per message.
	src := &logSource{text: string(b), buf: slices.Clone(b)}
	ds := d.devices()
	used := make([]bool, len(ds))
	n := d.count(13)
	l.msgs = make([]Message, 0, n)
	for i := 0; i < n && d.ok(); i++ {
		m := decodeMessage(d, src, ds, used)
		if d.ok() && i > 0 && compareMessageOrder(&l.msgs[i-1], &m) >= 0 {
			d.fail("messages not in log order")
		}
		l.msgs = append(l.msgs, m)
	}
	switch {
	case !d.ok():
	case slices.Contains(used, false):
		d.fail("unused device in table")
	case hasDuplicateID(l.msgs):
		d.fail("duplicate message id")
	}
	if err := d.end(); err != nil {
		return nil, wrapDecode("log", err)
	}
	return l, nil
}

// logSource holds the copies of a Log encoding that decoded ids and bodies
// point into.
type logSource struct {
	text string
	buf  []byte
}

// span reads a length-prefixed byte string and returns its position.
func (s *logSource) span(d *dec) (start, end int) {
	n := d.count(1)
	start = d.pos()
	d.take(n)
	if !d.ok() {
		return 0, 0
	}
	return start, start + n
}

func decodeMessage(d *dec, src *logSource, ds []core.DeviceID, used []bool) Message {
	var m Message
	start, end := src.span(d)
	m.ID = src.text[start:end]
	m.Time = d.timestamp()
	di := d.index(len(ds))
	flags := d.byte1()
	if !d.ok() {
		return m
	}
	m.Device, used[di] = ds[di], true
	if flags&^(flagEdited|flagDeleted) != 0 {
		d.fail("unknown message flags")
	}
	m.Deleted = flags&flagDeleted != 0
	if flags&flagEdited != 0 {
		m.Edited = d.timestamp()
		ei := d.index(len(ds))
		if !d.ok() {
			return m
		}
		m.Editor, used[ei] = ds[ei], true
		if m.Edited == 0 {
			d.fail("edited flag with zero edit time")
		}
	}
	if start, end := src.span(d); end > start {
		m.Body = src.buf[start:end:end]
	}
	switch {
	case !d.ok():
	case m.ID == "" || len(m.ID) > MaxMessageID:
		d.fail("bad message id length")
	case m.Deleted && len(m.Body) != 0:
		d.fail("deleted message with body")
	}
	return m
}
