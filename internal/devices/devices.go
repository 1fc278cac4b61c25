// Package devices keeps who the user's devices are, for a node: the
// replicated device registry (signed operations folded, in any order, into
// one registry state, as an observer of the commit pipeline; the mesh
// secret; the operations this device makes) and the session admission that
// follows from it (the device table, pairing invitations, last_seen).
//
// It reaches the rest of the node through small interfaces: Replica (the
// commit pipeline, for committing registry records and for its write lock,
// under which the registry state is read and changed), Records (the stored
// operations, read once at load), an audit sink and a cut-off function
// (which closes a revoked device's sessions: called only once the write
// lock is released). Signatures use the device's identity.Identity and the
// device table lives in the store's core.SQLStore when it has one.
package devices

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/registry"
)

// Replica is the commit pipeline as the registry uses it (*replica.Replica
// behind a thin adapter of the node's).
type Replica interface {
	// Update commits the writes fn returns as one local transaction, with
	// the write lock held while fn runs (replica.Replica.Update); it fails
	// once the node is closed.
	Update(ctx context.Context, op string, fn func(ctx context.Context) ([]replica.Op, error)) error
	// Exclusive runs fn with the write lock held, between commits.
	Exclusive(ctx context.Context, op string, fn func() error) error
	// RefuseReentry fails with replica.ErrReentrantWrite when called from
	// inside an Update callback.
	RefuseReentry(ctx context.Context, op string) error
	// OriginDevice returns the device that wrote under a replica id.
	OriginDevice(origin core.DeviceID) core.DeviceID
}

// Records scans the stored records of a collection (core.Store's Scan).
type Records interface {
	Scan(ctx context.Context, collection string, r core.KeyRange, fn func(core.Record) error) error
}

// Config is what a Registry is built from. Replica, Identity, HLC and Trust
// are required; every other zero value is documented.
type Config struct {
	// Replica commits this device's operations and holds the write lock
	// under which the registry state is read and changed.
	Replica Replica
	// Identity signs this device's operations and opens the mesh secret.
	Identity *identity.Identity
	// HLC stamps the operations.
	HLC *core.HLC
	// Trust holds the device table the registry state is written to.
	Trust *Trust
	// Name is this device's name in the genesis operation.
	Name string
	// Type is this device's kind of hardware in the genesis operation.
	Type registry.DeviceType
	// Audit appends an entry to the audit log (nil: nothing is audited).
	// Called with the write lock held at times.
	Audit func(ctx context.Context, e audit.Entry)
	// CutOff closes every live session with a device and returns how many
	// (nil: none are). Never called with the write lock held.
	CutOff func(id core.DeviceID) int
	// SelfRevoked, when set, is called once this device's registry says
	// it was revoked (by: the revoking device), without the write lock.
	SelfRevoked func(by core.DeviceID)
	// Rand is the randomness of mesh secrets (nil: crypto/rand).
	Rand io.Reader
	// Logger receives logs (nil: discarded).
	Logger *slog.Logger
}

// Registry is this device's copy of the replicated device registry: the
// registry state folded from every signed operation it holds, and the
// operations it makes (found the mesh, add, revoke, rename, set a policy,
// rotate the mesh secret). It observes the commit pipeline
// (replica.Observer). Its state is read and changed under the replica's
// write lock only.
type Registry struct {
	cfg Config
	log *slog.Logger

	reg        *registry.State            // replicated device registry (nil: no mesh yet); under the write lock
	pendingOps []registry.Op              // operations held until the mesh's genesis arrives
	reported   map[core.DeviceID]struct{} // revoked devices already handed to the cut-off
	notices    notices                    // signed revocations, for refused peers (notice.go)
}

var _ replica.Observer = (*Registry)(nil)

// New builds a Registry on cfg with no mesh yet; Load fills it from the
// stored operations.
func New(cfg Config) *Registry {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Registry{cfg: cfg, log: log, reported: map[core.DeviceID]struct{}{}}
}

// self is this device's id.
func (n *Registry) self() core.DeviceID { return n.cfg.Identity.DeviceID() }

// record appends an audit entry, if there is an audit log.
func (n *Registry) record(ctx context.Context, e audit.Entry) {
	if n.cfg.Audit != nil {
		n.cfg.Audit(ctx, e)
	}
}

// cutOff closes the sessions with a device through Config.CutOff.
func (n *Registry) cutOff(id core.DeviceID) int {
	if n.cfg.CutOff == nil {
		return 0
	}
	return n.cfg.CutOff(id)
}
