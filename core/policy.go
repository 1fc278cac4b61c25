package core

import "time"

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
)

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
	}
	return "mode(?)"
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
	// Priority orders collections in a sync round.
	Priority Priority
	// Mode says when changes travel.
	Mode Mode
	// Interval is the batching period for ModePeriodic (0: one minute).
	Interval time.Duration
	// Resolver settles concurrent versions; nil means last-writer-wins.
	Resolver Resolver
}

// Syncs reports whether records of a collection with this policy ever leave
// the device.
func (p Policy) Syncs() bool { return p.Mode != ModeLocalOnly }
