package engine

import (
	"context"
	"errors"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/merkle"
)

// The adapters a syncer.Session works against that need only the replica
// and the store, not the node (syncer.Replica), and the commit observer
// that feeds the senders' overtaking index.

// SyncReplica is the node's data as a session sees it (syncer.Replica):
// the store for reads, the replica for everything that writes or locks.
type SyncReplica struct {
	Store core.Store
	Rep   *replica.Replica
	// Counter counts the changelog without reading values, when the store
	// can (core.ChangeCounter, found where the node is built); nil: the
	// sessions' census reads the changes.
	Counter core.ChangeCounter
}

// NewSyncReplica returns the replica's view for sessions, with the store's
// ChangeCounter when the store (the outermost one) offers it.
func NewSyncReplica(st core.Store, rep *replica.Replica) SyncReplica {
	cc, _ := st.(core.ChangeCounter)
	return SyncReplica{Store: st, Rep: rep, Counter: cc}
}

// CountChanges implements syncer.Counter: errors.ErrUnsupported when the
// store cannot count.
func (r SyncReplica) CountChanges(ctx context.Context, origin core.DeviceID, after, upTo uint64) (map[string]core.ChangeTally, error) {
	if r.Counter == nil {
		return nil, errors.ErrUnsupported
	}
	return r.Counter.CountChanges(ctx, origin, after, upTo)
}

func (r SyncReplica) VersionVector(ctx context.Context) (core.VersionVector, error) {
	return r.Store.VersionVector(ctx)
}

func (r SyncReplica) Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error {
	return r.Store.Changes(ctx, origin, after, limit, fn)
}

func (r SyncReplica) Changed() <-chan struct{} { return r.Rep.Changed() }

func (r SyncReplica) OriginDevice(origin core.DeviceID) core.DeviceID {
	return r.Rep.OriginDevice(origin)
}

func (r SyncReplica) ApplyRemote(ctx context.Context, txns [][]core.Change) (syncer.Applied, error) {
	rt := make([]replica.Txn, len(txns))
	for i, t := range txns {
		rt[i] = t
	}
	res, err := r.Rep.ApplyRemote(ctx, rt)
	return syncer.Applied{Txns: res.Txns, Changes: res.Changes, Conflicts: res.Conflicts}, err
}

func (r SyncReplica) ApplyRecords(ctx context.Context, recs []core.Change) error {
	return r.Rep.ApplyRecords(ctx, recs)
}

func (r SyncReplica) Advance(ctx context.Context, vv core.VersionVector) error {
	return r.Rep.Advance(ctx, vv)
}

func (r SyncReplica) Roots() map[string][32]byte {
	roots := map[string][32]byte{}
	for c, d := range r.Rep.Roots() {
		roots[c] = d
	}
	return roots
}

func (r SyncReplica) Snapshot(ctx context.Context) (core.VersionVector, map[string][32]byte, error) {
	return r.Rep.Snapshot(ctx)
}

// RepairBase reads the version vector under the write lock: commits update
// the Merkle trees after the store, under that lock, so the trees then
// reflect at least everything in it. (Read without it, it could name a
// change whose record the trees do not show yet; the peer would then raise
// its version vector past a record it never received.)
func (r SyncReplica) RepairBase(ctx context.Context) (core.VersionVector, error) {
	return r.Rep.VersionVector(ctx)
}

func (r SyncReplica) Reconciler(coll string, cfg merkle.Config) syncer.Reconciler {
	return &treeReconciler{rep: r.Rep, coll: coll, cfg: cfg}
}

func (r SyncReplica) AnswerMerkle(coll string, req *merkle.Request) ([]byte, error) {
	var b []byte
	var err error
	r.Rep.WithTree(coll, func(t *merkle.Tree) {
		var resp *merkle.Response
		if resp, err = t.Respond(req); err == nil {
			b, err = resp.AppendBinary(nil, req)
		}
	})
	return b, err
}

func (r SyncReplica) Get(ctx context.Context, coll, key string) (core.Record, error) {
	return r.Store.Get(ctx, coll, key)
}

// treeReconciler runs a merkle.Reconciler over a collection's tree,
// under the trees' lock: the replica holds the tree across rounds
// (HoldTree), and later commits fold into it.
type treeReconciler struct {
	rep  *replica.Replica
	coll string
	cfg  merkle.Config
	rec  *merkle.Reconciler
}

func (t *treeReconciler) Start() *merkle.Request {
	var req *merkle.Request
	t.rep.HoldTree(t.coll, func(tree *merkle.Tree) {
		t.rec = merkle.NewReconciler(tree, t.cfg)
		req = t.rec.Start()
	})
	return req
}

func (t *treeReconciler) Next(resp *merkle.Response) (*merkle.Request, error) {
	var req *merkle.Request
	var err error
	t.rep.WithTrees(func() { req, err = t.rec.Next(resp) })
	return req, err
}

func (t *treeReconciler) Diff() merkle.Diff { return t.rec.Diff() }

// UrgentHook notes the changes of every local or remote commit to a
// collection of top priority (syncer.OvertakeFloor, before per-device
// overrides) in the node's syncer.UrgentIndex (Urgent): the senders look there for
// changes that may overtake a backlog.
type UrgentHook struct {
	Policy func(collection string) core.Policy
	Urgent *syncer.UrgentIndex
}

func (h UrgentHook) Committed(c replica.Commit) func() {
	if c.Source != replica.SourceLocal && c.Source != replica.SourceRemote {
		return nil // repair records and advances are not in the log as such
	}
	var dots []syncer.Dot
	for _, r := range c.Records {
		if p := h.Policy(r.Collection); r.Seq != 0 && p.Syncs() && p.Priority >= syncer.OvertakeFloor {
			dots = append(dots, syncer.Dot{Origin: r.Origin, Seq: r.Seq})
		}
	}
	if len(dots) > 0 {
		h.Urgent.Note(dots...)
	}
	return nil
}
