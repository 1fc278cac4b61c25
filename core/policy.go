package core

import (
	"fmt"
	"time"
)

// Priority orders collections during sync: higher priorities are sent first.
type Priority int

// Sync priorities, lowest first. Whether a collection leaves the device at
// all is its Mode's decision (ModeLocalOnly), not its priority's.
const (
	PriorityNone Priority = iota
	PriorityLow
	PriorityMedium
	PriorityHigh
)

// String names the priority.
func (p Priority) String() string {
	switch p {
	case PriorityNone:
		return "none"
	case PriorityLow:
		return "low"
	case PriorityMedium:
		return "medium"
	case PriorityHigh:
		return "high"
	}
	return "priority(?)"
}

// ParsePriority parses a priority's String form.
func ParsePriority(s string) (Priority, error) {
	for p := PriorityNone; p <= PriorityHigh; p++ {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown priority %q", ErrInvalidArgument, s)
}

// MarshalText encodes the priority as its String form (in JSON device
// policies, say).
func (p Priority) MarshalText() ([]byte, error) {
	if p < PriorityNone || p > PriorityHigh {
		return nil, fmt.Errorf("%w: priority %d", ErrInvalidArgument, int(p))
	}
	return []byte(p.String()), nil
}

// UnmarshalText decodes a priority's String form.
func (p *Priority) UnmarshalText(b []byte) error {
	v, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Mode says when a collection's changes travel.
type Mode int

// Sync modes.
const (
	// ModeImmediate pushes every write to connected peers at once.
	ModeImmediate Mode = iota
	// ModePeriodic batches writes and sends them on a timer.
	ModePeriodic
	// ModeOnDemand syncs keys and digests; values travel when the host asks.
	ModeOnDemand
	// ModeLocalOnly never leaves the device.
	ModeLocalOnly
	// ModeSummary sends in full only the versions the host marked as
	// summaries (Tx.PutSummary); every other change travels as a stub
	// (key, size, digest), its value on demand.
	ModeSummary
	// ModeThumbnail is for media: records (blob references with their
	// thumbnails) are pushed at once like ModeImmediate, the originals
	// they reference travel when the host asks (Node.FetchBlob).
	ModeThumbnail
)

// lastMode is the highest Mode: ParseMode and MarshalText accept up to it.
const lastMode = ModeThumbnail

// String names the mode.
func (m Mode) String() string {
	switch m {
	case ModeImmediate:
		return "immediate"
	case ModePeriodic:
		return "periodic"
	case ModeOnDemand:
		return "on-demand"
	case ModeLocalOnly:
		return "local-only"
	case ModeSummary:
		return "summary"
	case ModeThumbnail:
		return "thumbnail"
	}
	return "mode(?)"
}

// ParseMode parses a mode's String form.
func ParseMode(s string) (Mode, error) {
	for m := ModeImmediate; m <= lastMode; m++ {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown mode %q", ErrInvalidArgument, s)
}

// MarshalText encodes the mode as its String form.
func (m Mode) MarshalText() ([]byte, error) {
	if m < ModeImmediate || m > lastMode {
		return nil, fmt.Errorf("%w: mode %d", ErrInvalidArgument, int(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText decodes a mode's String form.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Names of the standard collections, one per data type of the design.
const (
	CollectionProfile      = "profile"
	CollectionConversation = "conversations"
	CollectionPersonality  = "personality"
	CollectionEmbeddings   = "embeddings"
	CollectionAnalytics    = "analytics"
	CollectionMedia        = "media"
	CollectionCache        = "cache"
)

// Policy is how one collection syncs and resolves conflicts.
type Policy struct {
	// Priority orders collections in a sync round: with a backlog, a
	// change of a higher priority goes out before any of a lower one
	// (package policy plans this).
	Priority Priority
	// Mode says when changes travel (package policy plans this).
	Mode Mode
	// Interval is the batching period for ModePeriodic (0: one minute).
	Interval time.Duration
	// Resolver settles concurrent versions; nil means last-writer-wins.
	Resolver Resolver
}

// Syncs reports whether records of a collection with this policy ever leave
// the device.
func (p Policy) Syncs() bool { return p.Mode != ModeLocalOnly }
