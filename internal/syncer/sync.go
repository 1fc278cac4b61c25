package syncer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/wire"
)

// Sync limits. They bound what one peer can make this device hold in memory.
const (
	// maxSyncFrame bounds one frame on a sync stream: room for the largest
	// value plus its metadata.
	maxSyncFrame = core.MaxValueLen + 64<<10
	// batchBytes is the size at which the sender closes a Changes frame.
	batchBytes = 2 << 20
	// batchChanges bounds the changes read from the log per query.
	batchChanges = 2048
	// maxPendingBytes bounds the partial transactions buffered per session
	// while waiting for their last change.
	maxPendingBytes = 512 << 20
	// heartbeat is how often an idle sender repeats its CaughtUp.
	heartbeat = time.Second
)

// ErrPendingTooLarge reports a peer whose incomplete transactions exceed the
// per-session buffer.
var ErrPendingTooLarge = errors.New("incomplete transactions exceed the session buffer")

// Session runs the sync protocol over one authenticated session. Each
// side opens one stream and sends on it: first SyncHello with what it holds,
// then Changes frames with whatever the peer lacks, CaughtUp whenever it has
// nothing more to send, and Ack after applying the peer's changes. Both
// directions run at once, so a session is a full-duplex, continuous sync
// that lasts as long as the connection.
//
// No change is sent to a device that holds it. Each side tells the other,
// in a Direct frame after its hello and whenever its sessions change,
// which devices it is connected to: their changes come from them, and the
// other side forwards only what no direct link brings (in a full mesh,
// each device sends only its own changes, each over each link once). A
// change that depends on such an origin waits until the peer announces
// that it holds the dependency.
type Session struct {
	cfg   Config
	r     Replica
	count Counter // nil: the census reads the changes
	links Links
	sched core.Scheduler
	sess  core.Session
	peer  core.DeviceID

	// sentAudit and recvAudit sum the audit entries of the batches sent
	// and received (audit_batch.go).
	sentAudit, recvAudit *batchAudit

	outMu sync.Mutex
	out   core.Stream
	// frameBuf is the send goroutine's scratch space for Changes and
	// Records frames, reused from one frame to the next.
	frameBuf []byte

	mu        sync.Mutex
	peerHas   core.VersionVector // what the peer holds, as far as we know
	peerAcked core.VersionVector // the peer's last Ack
	caughtUp  core.VersionVector // the peer's last CaughtUp
	hello     chan struct{}      // closed when the peer's SyncHello arrived
	update    *replica.Notifier  // woken when caughtUp or peerAcked change
	repairIn  chan wire.Frame    // replies to our repair, from receive to send
	helloVV   core.VersionVector // what the peer held when the session began
	// startVV is what this device held when the session began: of the
	// peer's own changes, only those up to here (and beyond helloVV) can
	// be missing at the peer; it wrote every later one itself.
	startVV core.VersionVector
	// direct holds the origins the peer receives from their own devices
	// (its last Direct frame): this side forwards it none of their
	// changes, so no change reaches a device twice. routed is closed when
	// the first Direct frame arrived.
	direct map[core.DeviceID]bool
	routed chan struct{}
	// routesDirty asks the send goroutine to send this device's Direct set
	// again: a session began or ended.
	routesDirty atomic.Bool
	// open tracks, per origin, a transaction sent in part (send goroutine
	// only): it is finished before anything else of that origin, whatever
	// the peer has announced meanwhile, so the peer's assembler always
	// sees whole transactions in order.
	open map[core.DeviceID]openTxn
	// stalls tracks the peer's progress on the origins it receives
	// directly (send goroutine only; see mayForward).
	stalls map[core.DeviceID]stall
	// prio is the state of transactions sent ahead (sync_priority.go).
	prio prioState
	// pacing is the state of a paced stream (sync_pace.go).
	pacing paceState
	// batch is the state of periodic batches (sync_batch.go).
	batch batchState
	// prog is the progress accounting (progress.go).
	prog progressState
	// repairRecv counts records received since the peer's last Repair
	// frame (receive goroutine only).
	repairRecv uint64
	// asked holds the wanted keys asked of the peer, and when
	// (sync_fetch.go).
	askMu sync.Mutex
	asked map[replica.Wanted]time.Time
	// Acks and requests from the receive goroutine to the send goroutine
	// (sync_control.go).
	ctlMu   sync.Mutex
	ctlAck  core.VersionVector
	ctlReqs []wire.Frame
	kick    chan struct{}
	// inControl is set while serveControl runs (send goroutine only), so
	// that a long push it makes does not serve control again inside it.
	inControl bool
	// repairReq asks the send goroutine for a Merkle repair.
	repairReq chan struct{}
	// gate paces the repairs this side asks for (receive goroutine only).
	gate repairGate

	cancel context.CancelFunc // stops the session's goroutines
	stats  sessionStats
	// opened is closed once the sync stream is open: OpenStream waits
	// for it (sync_streams.go).
	opened chan struct{}
}

// sessionStats counts one session's traffic.
type sessionStats struct {
	framesSent, framesRecv   atomic.Uint64
	bytesSent, bytesRecv     atomic.Uint64
	changesSent, changesRecv atomic.Uint64
	conflicts                atomic.Uint64
	recordsSent, recordsRecv atomic.Uint64
	repairs                  atomic.Uint64
	// echoes counts changes sent to the peer that originated at the peer
	// (under any of its incarnations): only a peer restored from an older
	// copy lacks any of its own changes, and then only those written before
	// the session began. redundant counts changes received that this
	// device already held. Both are waste a correct sender avoids.
	echoes, redundant atomic.Uint64
	// Selective sync (sync_fetch.go): changes sent as stubs, keys asked
	// in Want frames, values sent and installed, values refused (their
	// digest did not match).
	stubsSent, wantsSent                  atomic.Uint64
	valuesSent, valuesRecv, valuesRefused atomic.Uint64
}

// New returns the Session for sess; links is its view of the node's
// other sessions. Run runs it.
func New(cfg Config, sess core.Session, links Links) *Session {
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Scheduler == nil {
		cfg.Scheduler = core.SchedulerOf(nil)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Audit == nil {
		cfg.Audit = noAudit{}
	}
	if cfg.Events == nil {
		cfg.Events = noEvents{}
	}
	if cfg.Policy == nil {
		cfg.Policy = allSync{}
	}
	if cfg.Urgent == nil {
		cfg.Urgent = noUrgent{}
	}
	count, _ := cfg.Replica.(Counter)
	return &Session{
		cfg:       cfg,
		r:         cfg.Replica,
		count:     count,
		links:     links,
		sched:     cfg.Scheduler,
		sess:      sess,
		peer:      sess.Peer(),
		peerHas:   core.VersionVector{},
		peerAcked: core.VersionVector{},
		hello:     make(chan struct{}),
		direct:    map[core.DeviceID]bool{},
		routed:    make(chan struct{}),
		open:      map[core.DeviceID]openTxn{},
		asked:     map[replica.Wanted]time.Time{},
		stalls:    map[core.DeviceID]stall{},
		update:    replica.NewNotifier(),
		repairIn:  make(chan wire.Frame, 1),
		repairReq: make(chan struct{}, 1),
		kick:      make(chan struct{}, 1),
		opened:    make(chan struct{}),
		sentAudit: newBatchAudit(cfg.Audit, cfg.Scheduler, sess.Peer(), false),
		recvAudit: newBatchAudit(cfg.Audit, cfg.Scheduler, sess.Peer(), true),
	}
}

type noAudit struct{}

func (noAudit) Record(context.Context, audit.Entry) {}

type noEvents struct{}

func (noEvents) RepairUnsettled(core.DeviceID, int, map[string][32]byte, map[string][32]byte) {}

type allSync struct{}

func (allSync) Syncs(string) bool { return true }

func (allSync) Admit(core.DeviceID, string) bool { return true }

func (allSync) Priority(core.DeviceID, string) core.Priority { return core.PriorityMedium }

func (allSync) Stub(core.DeviceID, string, bool) bool { return false }

type noUrgent struct{}

func (noUrgent) Urgent(uint64) ([]Dot, uint64) { return nil, 0 }

// Peer returns the device at the other end.
func (ps *Session) Peer() core.DeviceID { return ps.peer }

// Run speaks the sync protocol until the session ends or ctx is done, and
// closes the session. It returns why it ended.
func (ps *Session) Run(ctx context.Context) error {
	ctx, ps.cancel = context.WithCancel(ctx)
	defer ps.cancel()
	ps.routesDirty.Store(false) // run sends the first Direct frame
	err := ps.run(ctx)
	_ = ps.sess.Close(err)
	ps.sentAudit.close(context.WithoutCancel(ctx))
	ps.recvAudit.close(context.WithoutCancel(ctx))
	return err
}

// Reroute asks the session to send the Direct set again: the node's set
// of connected devices changed.
func (ps *Session) Reroute() {
	ps.routesDirty.Store(true)
	ps.poke()
}

func (ps *Session) run(ctx context.Context) error {
	// A peer that opens no stream, never finishes its hello or stops
	// mid-frame is cut off (sync_watch.go); the cause is ErrStalled.
	lim := ps.cfg.Limits
	ctx, stall := context.WithCancelCause(ctx)
	defer stall(nil)
	cutOff := func(err error) { stall(err); _ = ps.sess.Close(err) }
	stalled := func(err error) error {
		if c := context.Cause(ctx); errors.Is(c, ErrStalled) {
			return c
		}
		return err
	}
	helloTimer := ps.sched.AfterFunc(lim.HelloTimeout, func() {
		select {
		case <-ps.hello:
		default:
			cutOff(fmt.Errorf("%w: no sync hello within %v", ErrStalled, lim.HelloTimeout))
		}
	})
	defer helloTimer.Stop()
	out, err := ps.sess.OpenStream(ctx)
	if err != nil {
		return stalled(fmt.Errorf("open sync stream: %w", err))
	}
	ps.out = out
	close(ps.opened)
	defer out.Close()
	vv, err := ps.r.VersionVector(ctx)
	if err != nil {
		return fmt.Errorf("sync hello: %w", err)
	}
	ps.mu.Lock()
	ps.startVV = vv
	ps.mu.Unlock()
	if err := ps.send(wire.TypeSyncHello, wire.AppendSyncHello(nil, ps.links.Hello(vv))); err != nil {
		return stalled(err)
	}
	if err := ps.sendDirect(); err != nil {
		return err
	}
	in, err := ps.sess.AcceptStream(ctx)
	if err != nil {
		return stalled(fmt.Errorf("accept sync stream: %w", err))
	}
	defer in.Close()
	fw := watchFrames(in, ps.sched, lim.FrameTimeout, func() {
		cutOff(fmt.Errorf("%w: no whole frame within %v of its first byte", ErrStalled, lim.FrameTimeout))
	})
	defer fw.stop()
	defer ps.acceptStreams(ctx)() // further streams (sync_streams.go)
	errc := make(chan error, 2)
	go func() { errc <- ps.receive(ctx, fw) }()
	go func() { errc <- ps.sendLoop(ctx) }()
	pending := 2
	select {
	case err = <-errc:
		pending--
	case <-ps.sess.Done():
		err = io.EOF
	case <-ctx.Done():
		err = ctx.Err()
	}
	// Unblock the goroutines still running (in a Read, a Write or a wait),
	// then wait for them.
	_ = ps.sess.Close(err)
	_ = in.Close()
	_ = out.Close()
	ps.cancel()
	for ; pending > 0; pending-- {
		<-errc
	}
	return stalled(err)
}

// send writes one frame on the outbound stream.
func (ps *Session) send(t wire.Type, payload []byte) error {
	ps.outMu.Lock()
	defer ps.outMu.Unlock()
	if err := wire.WriteFrame(ps.out, t, payload); err != nil {
		return err
	}
	ps.stats.framesSent.Add(1)
	ps.stats.bytesSent.Add(uint64(wire.HeaderSize + len(payload)))
	return nil
}

// sendChanges encodes changes as one frame of type t (Changes or Records)
// in place in the session's scratch buffer and writes it. Only the send
// goroutine calls it.
func (ps *Session) sendChanges(t wire.Type, changes []core.Change) error {
	changes = ps.stubbed(changes)
	f := wire.AppendChanges(wire.StartFrame(ps.frameBuf[:0], t), changes)
	if err := wire.FinishFrame(f); err != nil {
		return err
	}
	ps.outMu.Lock()
	_, err := ps.out.Write(f)
	ps.outMu.Unlock()
	if cap(f) <= 2*batchBytes {
		ps.frameBuf = f[:0] // keep ordinary-sized buffers, drop huge ones
	}
	if err != nil {
		return fmt.Errorf("write %v frame: %w", t, err)
	}
	ps.stats.framesSent.Add(1)
	ps.stats.bytesSent.Add(uint64(len(f)))
	ps.progressSent(changes) // progress.go
	return nil
}

// sendDirect tells the peer which origins this device receives directly.
func (ps *Session) sendDirect() error {
	return ps.send(wire.TypeDirect, wire.AppendVV(nil, ps.links.Direct()))
}

// openTxn is a transaction sent in part: first and end are its first and
// last sequence numbers, sent the last one sent.
type openTxn struct{ first, sent, end uint64 }

// Status describes a session's progress and traffic (see
// federation.PeerStatus for the fields).
type Status struct {
	Peer                              core.DeviceID
	CaughtUp, Acked                   core.VersionVector
	ChangesSent, ChangesRecv          uint64
	BytesSent, BytesRecv              uint64
	FramesSent, FramesRecv            uint64
	Conflicts                         uint64
	Repairs, RecordsSent, RecordsRecv uint64
	Echoes, Redundant                 uint64
	// Selective sync: changes sent as stubs, keys asked, values sent,
	// received (installed) and refused (digest mismatch).
	StubsSent, WantsSent                  uint64
	ValuesSent, ValuesRecv, ValuesRefused uint64
}

// Status returns the session's progress and traffic so far.
func (ps *Session) Status() Status {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return Status{
		Peer:        ps.peer,
		CaughtUp:    ps.caughtUp.Clone(),
		Acked:       ps.peerAcked.Clone(),
		ChangesSent: ps.stats.changesSent.Load(),
		ChangesRecv: ps.stats.changesRecv.Load(),
		BytesSent:   ps.stats.bytesSent.Load(),
		BytesRecv:   ps.stats.bytesRecv.Load(),
		FramesSent:  ps.stats.framesSent.Load(),
		FramesRecv:  ps.stats.framesRecv.Load(),
		Conflicts:   ps.stats.conflicts.Load(),
		Repairs:     ps.stats.repairs.Load(),
		RecordsSent: ps.stats.recordsSent.Load(),
		RecordsRecv: ps.stats.recordsRecv.Load(),
		Echoes:      ps.stats.echoes.Load(),
		Redundant:   ps.stats.redundant.Load(),

		StubsSent:     ps.stats.stubsSent.Load(),
		WantsSent:     ps.stats.wantsSent.Load(),
		ValuesSent:    ps.stats.valuesSent.Load(),
		ValuesRecv:    ps.stats.valuesRecv.Load(),
		ValuesRefused: ps.stats.valuesRefused.Load(),
	}
}
