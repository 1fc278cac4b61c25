package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/anchor"
	"github.com/devicemesh/federation/internal/devices"
	"github.com/devicemesh/federation/internal/mailbox"
	"github.com/devicemesh/federation/internal/peers"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/policy"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/transport"
)

// Options is what the engine takes from the node's configuration
// (federation.Config, validated) and the hooks through which it tells the
// façade what the host should hear of.
type Options struct {
	Name          string              // this device's name (Config.Device.Name)
	Type          registry.DeviceType // this device's kind (Config.Device.Type)
	Device        any                 // the device's description, saved in the store (Config.Device)
	Clock         core.Clock
	MaxClockDrift time.Duration
	SyncTimeout   time.Duration
	Limits        transport.Limits
	Logger        *slog.Logger
	Rand          io.Reader // nil: crypto/rand
	Policy        func(collection string) core.Policy
	Planner       func() *policy.Planner
	Collections   map[string]core.Policy
	Reembed       conflict.ReembedFunc
	// RestoreMarker is the file by which Restore declares a restore ("":
	// none is honoured).
	RestoreMarker string

	// Publish delivers an event of the commit pipeline to the host.
	Publish func(replica.Event)
	// SelfRevoked reports that this device was revoked (by: the revoking
	// device), once.
	SelfRevoked func(by core.DeviceID)
	// Tampered reports a rewritten or truncated audit history.
	Tampered func(origin core.DeviceID, reason string)
	// Unsettled reports repairs with peer that do not settle.
	Unsettled func(peer core.DeviceID, tries int, ours, theirs map[string][32]byte)
	// Discovery says how the node finds its peers and reports sessions.
	Discovery DiscoveryOptions
	// Progress reports sync progress and what waits (nil: not reported).
	Progress func(ps []syncer.Progress)
}

// Core is the assembled node below the façade: the store, the identity,
// the rooms (replica, devices, anchor, peers, syncer sessions) and the
// wiring between them. federation.Node holds one and adds the host API.
type Core struct {
	Opts  Options
	Log   *slog.Logger
	Store core.Store
	Ident *identity.Identity
	HLC   *core.HLC

	// Backup is the store when it can copy itself (nil: it cannot).
	Backup core.BackupStore
	// Tables keeps the device registry and the audit log (nil: memory).
	Tables core.SQLStore

	// Rep is the commit pipeline: every write goes through it, and it alone
	// holds the write lock (internal/replica).
	Rep *replica.Replica
	// syncReplica is what sessions and relay mail see of the replica.
	syncReplica SyncReplica
	Urgent      syncer.UrgentIndex // recent top-priority changes, for overtaking
	Sel         *Selective         // selective sync: stubs, wanted values (selective.go)

	Peers    *peers.Manager // sessions: dial, accept, redial, cut-off
	Sessions *Sessions      // what runs on each session

	Trust   *devices.Trust    // who may hold a session (device registry)
	Anchor  *anchor.Anchor    // the audit log, its signed heads and tamper detection
	Reg     *devices.Registry // replicated device registry and mesh secret (internal/devices)
	Pairing *Pairing          // open invitations and the pairing ceremony
	Net     Net               // the transport once started

	Dir *DirGuard // lock on Config.Dir (nil without one)

	disc discoveryState  // sightings (discovery.go)
	Mail *mailbox.Mailer // relay mail (nil: none; mail.go)
	// Policies is the policy planner with the registry's device policies.
	Policies *DevicePolicies
	// Progress is the sessions' progress and what waits (progress.go).
	Progress ProgressBook
	// Batches remembers the periodic flushes per peer (syncer.Batches).
	Batches syncer.Batches

	stopReembed context.CancelFunc // stops the re-embed loop
	closed      chan struct{}
	wg          sync.WaitGroup
}

// Open assembles the engine on st: it loads this device's identity,
// creating it on first start, and builds every room. It does no network
// I/O.
func Open(ctx context.Context, opts Options, st core.Store) (*Core, error) {
	_, err := st.Meta(ctx, identity.MetaKey)
	created := errors.Is(err, core.ErrNotFound)
	ident, err := identity.LoadOrCreate(ctx, st, opts.Rand)
	if err != nil {
		return nil, err
	}
	if err := replica.SaveDeviceInfo(ctx, st, opts.Device); err != nil {
		return nil, err
	}
	c := &Core{
		Opts:   opts,
		Log:    opts.Logger.With("device", ident.DeviceID().Short()),
		Store:  st,
		Ident:  ident,
		HLC:    core.NewHLC(opts.Clock, opts.MaxClockDrift),
		closed: make(chan struct{}),
	}
	c.Sessions = &Sessions{}
	c.Sel = &Selective{c: c}
	c.Peers = peers.New(peers.Config{
		Self: ident.DeviceID(), Handler: c.Sessions, Roster: c.Sessions, Book: st,
		Clock: opts.Clock, Rand: opts.Rand, Logger: c.Log, Notice: c.acceptNotice,
	})
	c.Backup, _ = core.StoreAs[core.BackupStore](st)
	c.Tables = TablesOf(st, c.Log)
	if c.Rep, err = c.newReplica(ctx, created); err != nil {
		return nil, err
	}
	c.syncReplica = NewSyncReplica(st, c.Rep)
	if c.Trust, err = devices.OpenTrust(ctx, c.Tables, c.Log); err != nil {
		return nil, err
	}
	if err := c.openAnchor(ctx); err != nil {
		return nil, err
	}
	c.Reg = devices.New(devices.Config{
		Replica: DevicesReplica{Replica: c.Rep, Alive: c.Alive}, Identity: ident, HLC: c.HLC, Trust: c.Trust,
		Name: opts.Name, Type: opts.Type, Audit: c.Record, CutOff: c.Peers.CutOff, Rand: c.Random(), Logger: c.Log,
		SelfRevoked: c.selfRevoked,
	})
	c.Trust.SetNotices(c.Reg.Notice)
	if err := c.Reg.Load(ctx, st); err != nil {
		return nil, err
	}
	c.Pairing = &Pairing{
		Ident: ident, Name: opts.Name, Type: opts.Type, Clock: opts.Clock, Rand: c.Random(),
		Trust: c.Trust, Reg: c.Reg, Log: c.Log,
	}
	*c.Sessions = Sessions{
		Trust: c.Trust, Pairing: c.Pairing, Manager: c.Peers, Syncer: c.syncerConfig(),
		Record: c.Record, Addr: c.Net.Addr, Clock: opts.Clock, Log: c.Log,
		PeerEvent: opts.Discovery.PeerEvent,
	}
	c.Rep.Observe(c.Reg)
	c.Policies = NewDevicePolicies(ctx, opts.Planner, c.Trust, c.Log)
	c.Rep.Observe(c.Policies)
	c.Rep.Observe(offlineObserver{c})
	c.Rep.Observe(UrgentHook{Policy: opts.Policy, Urgent: &c.Urgent})
	c.Rep.Observe(c.Sel)
	if err := c.Sel.start(ctx); err != nil {
		return nil, err
	}
	StartAnchor(ctx, c.Anchor, &c.wg, c.closed)
	if opts.Reembed != nil {
		re := replica.NewReembedder(c.Rep, opts.Reembed)
		c.Rep.Observe(re)
		loopCtx, stop := context.WithCancel(context.Background())
		c.stopReembed = stop
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			re.Run(loopCtx)
		}()
	}
	c.Log.Info("node ready", "name", opts.Name)
	return c, nil
}

// newReplica opens the commit pipeline on the node's store.
func (c *Core) newReplica(ctx context.Context, created bool) (*replica.Replica, error) {
	resolvers, err := Resolvers(c.Opts.Collections, c.Opts.Policy)
	if err != nil {
		return nil, err
	}
	return replica.New(ctx, replica.Config{
		Store:         c.Store,
		Device:        c.Ident.DeviceID(),
		Created:       created,
		HLC:           c.HLC,
		Clock:         c.Opts.Clock,
		MaxClockDrift: c.Opts.MaxClockDrift,
		Policy:        c.Opts.Policy,
		Resolvers:     resolvers,
		Logger:        c.Log,
		Check:         c.CheckOps,
		Audit:         c.Record,
		Publish:       c.Opts.Publish,
		Alive:         c.Alive,
		WantValues:    func(coll string) bool { return c.Sel.WantValues(coll) },
	})
}

// openAnchor opens the audit log (in the store's tables, in memory without
// them) and builds its anchor.
func (c *Core) openAnchor(ctx context.Context) error {
	log, err := anchor.OpenLog(ctx, c.Tables, c.Opts.Clock)
	if err != nil {
		return err
	}
	c.Anchor = anchor.New(anchor.Config{
		Log: log, Memory: c.Tables == nil,
		Replica: AnchorReplica{Replica: c.Rep, Store: c.Store}, Identity: c.Ident, Events: anchorEvents{c},
		Clock: c.Opts.Clock, Logger: c.Log, RestoreMarker: c.Opts.RestoreMarker, SyncDir: SyncDir,
	})
	return nil
}

// anchorEvents raises the anchor's tamper reports through Options.Tampered.
type anchorEvents struct{ c *Core }

func (e anchorEvents) Tampered(origin core.DeviceID, reason string) {
	e.c.Opts.Tampered(origin, reason)
}

// syncerConfig is what every session of this node shares.
func (c *Core) syncerConfig() syncer.Config {
	lim := c.Opts.Limits.WithDefaults()
	return syncer.Config{
		Self:      c.Ident.DeviceID(),
		Replica:   c.syncReplica,
		Audit:     syncerAudit{c},
		Events:    syncerEvents{c},
		Policy:    syncerPolicy{c},
		Urgent:    &c.Urgent,
		Wants:     c.Rep,
		Progress:  progressSink{c},
		Batches:   &c.Batches,
		Scheduler: core.SchedulerOf(c.Opts.Clock),
		Log:       c.Log,
		Rand:      c.Random(),
		Limits: syncer.Limits{
			HelloTimeout: lim.HelloTimeout,
			FrameTimeout: lim.FrameTimeout,
			MaxFrame:     syncer.FrameLimit(c.Opts.Limits.MaxFrameSize),
			SyncTimeout:  c.Opts.SyncTimeout,
		},
	}
}

// syncerAudit appends a session's entries to the node's audit log.
type syncerAudit struct{ c *Core }

func (a syncerAudit) Record(ctx context.Context, e audit.Entry) { a.c.Record(ctx, e) }

// syncerEvents tells the host what a session found.
type syncerEvents struct{ c *Core }

func (e syncerEvents) RepairUnsettled(peer core.DeviceID, tries int, ours, theirs map[string][32]byte) {
	e.c.Opts.Unsettled(peer, tries, ours, theirs)
}

// syncerPolicy says which collections sync, and how to each peer, from
// the policy planner.
type syncerPolicy struct{ c *Core }

func (p syncerPolicy) Syncs(coll string) bool { return p.c.Opts.Policy(coll).Syncs() }

func (p syncerPolicy) Admit(peer core.DeviceID, coll string) bool {
	return p.c.Policies.Planner().Admit(peer, coll)
}

func (p syncerPolicy) Priority(peer core.DeviceID, coll string) core.Priority {
	return p.c.Policies.Planner().Priority(peer, coll)
}

func (p syncerPolicy) Stub(peer core.DeviceID, coll string, summary bool) bool {
	return p.c.Sel.Stub(peer, coll, summary)
}

// Random returns the node's source of randomness.
func (c *Core) Random() io.Reader {
	if c.Opts.Rand != nil {
		return c.Opts.Rand
	}
	return rand.Reader
}

// Record appends an entry to the audit log (anchor.Anchor.Record: a
// failure is logged, never fatal to sync).
func (c *Core) Record(ctx context.Context, e audit.Entry) { c.Anchor.Record(ctx, e) }

// CheckOps is the ingress check for internal records arriving from a peer
// (Config.Check of the commit pipeline): registry operations
// (devices.Registry.Check), then audit heads (anchor.Anchor.CheckHeads,
// with the write lock held).
func (c *Core) CheckOps(ctx context.Context, from core.DeviceID, recs []core.Record) error {
	if err := c.Reg.Check(ctx, from, recs); err != nil {
		return err
	}
	return c.Anchor.CheckHeads(ctx, from, recs)
}

// Alive fails with an error wrapping core.ErrClosed once Close began.
func (c *Core) Alive() error {
	select {
	case <-c.closed:
		return fmt.Errorf("node: %w", core.ErrClosed)
	default:
		return nil
	}
}

// Closed is closed when Close begins.
func (c *Core) Closed() <-chan struct{} { return c.closed }

// Start brings the network up with factory (see Net.Start).
func (c *Core) Start(ctx context.Context, factory func(context.Context) (core.Transport, error)) error {
	if err := c.Net.Start(ctx, factory, c.Peers, c.closed, &c.wg, c.Log); err != nil {
		return err
	}
	c.startDiscovery()
	return nil
}

// Close stops everything the engine started and waits for it, then, under
// the write lock (an in-flight Update finishes first), signs the audit
// head, saves the clock, runs last (the façade ends its subscriptions),
// closes the store and releases the directory. Call it once.
func (c *Core) Close(last func()) error {
	close(c.closed)
	if c.stopReembed != nil {
		c.stopReembed()
	}
	var errs []error
	if err := c.Net.Close(); err != nil {
		errs = append(errs, err)
	}
	c.Peers.Close() // waits for the sessions
	c.wg.Wait()
	// Under the write lock: let an in-flight Update finish.
	_ = c.Rep.Exclusive(context.Background(), "", func() error {
		c.Anchor.AnchorLocked(context.Background(), true) // sign the audit head
		if err := replica.SaveClock(context.Background(), c.Store, c.HLC.Last()); err != nil {
			errs = append(errs, err)
		}
		last()
		if err := c.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		if err := c.Dir.Release(); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	return errors.Join(errs...)
}

// Get returns the current version of (collection, key), tombstones
// included.
func (c *Core) Get(ctx context.Context, collection, key string) (core.Record, error) {
	if err := c.Alive(); err != nil {
		return core.Record{}, err
	}
	if err := core.ValidateKey(collection, key, 0); err != nil {
		return core.Record{}, err
	}
	return c.Store.Get(ctx, collection, key)
}

// Scan calls fn for each record of collection in r (see core.Store.Scan).
func (c *Core) Scan(ctx context.Context, collection string, r core.KeyRange, fn func(core.Record) error) error {
	if err := c.Alive(); err != nil {
		return err
	}
	if err := core.ValidateKey(collection, "", 0); err != nil {
		return err
	}
	return c.Store.Scan(ctx, collection, r, fn)
}

// StoreState returns the store's statistics and version vector, read
// between commits (it waits for one in progress).
func (c *Core) StoreState(ctx context.Context) (ss core.StoreStats, vv core.VersionVector, err error) {
	if err := c.Alive(); err != nil {
		return ss, nil, err
	}
	err = c.Rep.Exclusive(ctx, "stats", func() (err error) {
		if ss, err = c.Store.Stats(ctx); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
		if vv, err = c.Store.VersionVector(ctx); err != nil {
			return fmt.Errorf("stats: %w", err)
		}
		return nil
	})
	return ss, vv, err
}

// QUIC builds the default transport (QUIC on listenAddr, ":0" when empty).
func QUIC(ctx context.Context, listenAddr string, limits transport.Limits, ident *identity.Identity, auth core.Authorizer, keys transport.KeyLookup, log *slog.Logger) (core.Transport, error) {
	if listenAddr == "" {
		listenAddr = ":0"
	}
	return transport.NewQUIC(ctx, transport.QUICConfig{
		Identity:   ident,
		Authorizer: auth,
		Keys:       keys,
		ListenAddr: listenAddr,
		Limits:     limits,
		Logger:     log,
	})
}
