package federation

import (
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/policy"
)

// The domain types live in package core so that the plug-in implementations
// can share them without an import cycle; they are re-exported here so a host
// needs only this package.
type (
	// DeviceID identifies a device (SHA-256 of its public key).
	DeviceID = core.DeviceID
	// PublicKey is a device's long-term Ed25519 public key.
	PublicKey = core.PublicKey
	// Timestamp is a hybrid logical clock reading.
	Timestamp = core.Timestamp
	// Clock supplies physical time; tests can skew it.
	Clock = core.Clock
	// VersionVector maps devices to the highest sequence number seen.
	VersionVector = core.VersionVector
	// Record is one version of a (collection, key).
	Record = core.Record
	// Change is a changelog entry: a record version and its transaction.
	Change = core.Change
	// Batch is what a Store commits atomically.
	Batch = core.Batch
	// KeyRange selects keys of one collection for Scan.
	KeyRange = core.KeyRange
	// Policy says how a collection syncs and resolves conflicts.
	Policy = core.Policy
	// Priority orders collections in a sync round.
	Priority = core.Priority
	// Mode says when a collection's changes travel.
	Mode = core.Mode
	// Store is a node's durable state.
	Store = core.Store
	// StoreStats counts a store's contents.
	StoreStats = core.StoreStats
	// Transport carries authenticated sessions between devices.
	Transport = core.Transport
	// Session is an authenticated connection to one peer.
	Session = core.Session
	// Stream is one stream inside a Session.
	Stream = core.Stream
	// Authorizer decides which devices may hold a session.
	Authorizer = core.Authorizer
	// Discoverer finds the user's other devices.
	Discoverer = core.Discoverer
	// PeerInfo is what discovery learns about a device.
	PeerInfo = core.PeerInfo
	// Resolver settles concurrent versions of a record.
	Resolver = core.Resolver
	// Conflict is two concurrent versions of one record.
	Conflict = core.Conflict
	// Resolution is a Resolver's answer.
	Resolution = core.Resolution
)

// Priorities, modes and standard collection names, re-exported from core.
const (
	PriorityNone   = core.PriorityNone
	PriorityLow    = core.PriorityLow
	PriorityMedium = core.PriorityMedium
	PriorityHigh   = core.PriorityHigh

	ModeImmediate = core.ModeImmediate
	ModePeriodic  = core.ModePeriodic
	ModeOnDemand  = core.ModeOnDemand
	ModeLocalOnly = core.ModeLocalOnly
	ModeThumbnail = core.ModeThumbnail

	CollectionProfile      = core.CollectionProfile
	CollectionConversation = core.CollectionConversation
	CollectionPersonality  = core.CollectionPersonality
	CollectionEmbeddings   = core.CollectionEmbeddings
	CollectionAnalytics    = core.CollectionAnalytics
	CollectionMedia        = core.CollectionMedia
	CollectionCache        = core.CollectionCache
)

// Sentinel errors, re-exported from core; test with errors.Is.
var (
	ErrNotFound        = core.ErrNotFound
	ErrClosed          = core.ErrClosed
	ErrInvalidConfig   = core.ErrInvalidConfig
	ErrInvalidArgument = core.ErrInvalidArgument
	ErrClockDrift      = core.ErrClockDrift
	ErrTxnDone         = core.ErrTxnDone
	ErrUnauthorized    = core.ErrUnauthorized
	ErrLocked          = core.ErrLocked
	ErrDamaged         = core.ErrDamaged
	ErrWrongKey        = core.ErrWrongKey
)

// ParseDeviceID parses a device id's checkable text form.
func ParseDeviceID(s string) (DeviceID, error) { return core.ParseDeviceID(s) }

// DefaultPolicies returns the policy table of the design (policy.Default:
// profile and personality high and immediate, conversations medium and
// immediate, embeddings and media low and on demand, analytics low and
// periodic, cache local-only), one entry per standard collection, each
// with its resolver from conflict.Default (field merge for the profile,
// chronological merge for conversations, weighted averaging for the
// personality model, vector merge for embeddings, union for analytics,
// last-writer-wins for media). Collections not in a node's table get
// Policy{Priority: PriorityMedium, Mode: ModeImmediate} and
// last-writer-wins.
func DefaultPolicies() map[string]Policy {
	p := policy.Default()
	for name, pol := range p {
		pol.Resolver = conflict.Default(name)
		p[name] = pol
	}
	return p
}
