// Package mailbox is the node's side of relay mail: it leaves sealed
// envelopes at the relay for trusted devices that have been offline for a
// while, and collects, verifies and applies the envelopes left for this
// device.
//
// What goes into an envelope is exactly what a sync session would send:
// complete transactions of the changelog (internal/wire Changes
// payloads), of every origin, after what the peer held when its last
// session ended (or what was mailed to it since). Only collections that
// sync are in the changelog; a change of a collection that does not sync
// (local-only) is never packed, whatever the changelog holds. What
// arrives goes through the replica's ApplyRemote, the same commit
// pipeline as a session's changes, causally ordered across envelopes:
// an envelope whose transactions cannot be applied yet (a gap, a missing
// dependency) stays at the relay until they can, or until its TTL.
//
// An envelope that does not open, is not signed by a trusted device, is
// addressed to another device or epoch, or carries malformed changes is
// refused: it is deleted from the relay and nothing of it is applied.
//
// Mailboxes are named under the mesh secret (relay.MailboxFor). A peer is
// mailed under the generation current when its last session ended (a peer
// offline during a rotation does not know the newer one), and this device
// collects under the last two generations it has seen, for the current
// and the previous epoch.
//
// Limits: a transaction larger than one envelope (relay.MaxLetterBody) is
// not mailed (nor anything of its origin after it): a session brings it.
// What a peer is known to hold is raised as mail is deposited; mail lost
// at the relay (expired unread) is brought by the next session.
package mailbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/replica"
	"github.com/devicemesh/federation/internal/syncer"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/registry"
	"github.com/devicemesh/federation/relay"
)

// Replica is what the mailer reads and applies (engine.SyncReplica).
type Replica interface {
	VersionVector(ctx context.Context) (core.VersionVector, error)
	Changes(ctx context.Context, origin core.DeviceID, after uint64, limit int, fn func(core.Change) error) error
	OriginDevice(origin core.DeviceID) core.DeviceID
	ApplyRemote(ctx context.Context, txns [][]core.Change) (syncer.Applied, error)
}

// Conn is one connection to the relay's mail service (*relay.MailConn on
// a relay.Client stream).
type Conn interface {
	Deposit(ctx context.Context, mb relay.Mailbox, env []byte) (uint64, error)
	Collect(ctx context.Context, mb relay.Mailbox, after uint64, limit int) ([]relay.Mail, uint64, error)
	Ack(ctx context.Context, mb relay.Mailbox, seqs []uint64) (int, error)
	Close() error
}

// MetaStore keeps the mailer's state: what each peer held (core.Store).
type MetaStore interface {
	Meta(ctx context.Context, key string) ([]byte, error)
	SetMeta(ctx context.Context, key string, value []byte) error
}

// Config configures a Mailer. Every field without a default is required.
type Config struct {
	Ident   *identity.Identity
	Replica Replica
	Meta    MetaStore
	// Dial connects to the relay's mail service (under the current mesh
	// secret's credential).
	Dial func(ctx context.Context) (Conn, error)
	// Secret returns the current mesh secret.
	Secret func() (registry.Secret, error)
	// Peers lists the trusted devices (this one may be among them).
	Peers func(ctx context.Context) ([]core.DeviceID, error)
	// KeyOf returns a trusted device's public key, an error for any other.
	KeyOf func(ctx context.Context, id core.DeviceID) (core.PublicKey, error)
	// Online reports whether a session with the device is up now.
	Online func(id core.DeviceID) bool
	// Syncs reports whether a collection leaves the device.
	Syncs func(collection string) bool
	// Clock runs the rounds. nil: system time.
	Clock core.Scheduler
	// OfflineAfter is how long a peer must have been offline before it is
	// mailed. 0: one minute.
	OfflineAfter time.Duration
	// Interval separates rounds (collect, then send). 0: one minute.
	Interval time.Duration
	// Epoch is the mailbox epoch length. 0: relay.MailEpoch.
	Epoch time.Duration
	// Rand seals envelopes. nil: crypto/rand.
	Rand io.Reader
	// Log: nil discards.
	Log *slog.Logger
}

// Stats counts the mailer's work.
type Stats struct {
	Sent, Received, Applied, Refused, Acked, Pending uint64
}

// Mailer runs relay mail for one node.
type Mailer struct {
	cfg   Config
	self  core.DeviceID
	sched core.Scheduler
	log   *slog.Logger

	mu    sync.Mutex // one round at a time; guards peers and secrets
	peers map[core.DeviceID]*peerState
	// secrets are the last two generations of the mesh secret seen, the
	// newest first: mail is collected under both (a sender may not have
	// learnt of the newest, or may mail under the one this device held
	// when they last met).
	secrets []registry.Secret
	loaded  bool

	sent, received, applied, refused, acked, pending atomic.Uint64
}

// peerState is what this device knows a peer held, since when the peer
// is offline (zero: never seen offline), and the mesh secret generation
// current when its session ended: a peer offline while the secret
// rotated (a revocation) does not know the new one, and looks for its mail
// under the one it knew.
type peerState struct {
	vv     core.VersionVector
	since  time.Time
	secret registry.Secret
}

// New returns a Mailer; Run runs it.
func New(cfg Config) *Mailer {
	if cfg.Clock == nil {
		cfg.Clock = core.SchedulerOf(nil)
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = time.Minute
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Epoch <= 0 {
		cfg.Epoch = relay.MailEpoch
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Syncs == nil {
		cfg.Syncs = func(string) bool { return true }
	}
	return &Mailer{cfg: cfg, self: cfg.Ident.DeviceID(), sched: cfg.Clock, log: cfg.Log, peers: map[core.DeviceID]*peerState{}}
}

// Stats returns the counters so far.
func (m *Mailer) Stats() Stats {
	return Stats{
		Sent: m.sent.Load(), Received: m.received.Load(), Applied: m.applied.Load(),
		Refused: m.refused.Load(), Acked: m.acked.Load(), Pending: m.pending.Load(),
	}
}

const metaPrefix = "relay.mail.peer."

// SessionEnded records what peer held when its session ended (vv), and
// that it is offline from now on. It persists, so that a restarted node
// can still mail the peer.
func (m *Mailer) SessionEnded(ctx context.Context, peer core.DeviceID, vv core.VersionVector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.loadLocked(ctx, peer)
	st.vv.Merge(vv)
	st.since = m.sched.Now()
	if sec, err := m.cfg.Secret(); err == nil {
		st.secret = sec
	}
	m.saveLocked(ctx, peer, st)
}

func (m *Mailer) loadLocked(ctx context.Context, peer core.DeviceID) *peerState {
	if st := m.peers[peer]; st != nil {
		return st
	}
	st := &peerState{vv: core.VersionVector{}}
	m.peers[peer] = st
	b, err := m.cfg.Meta.Meta(ctx, metaPrefix+hex.EncodeToString(peer[:]))
	if err != nil || len(b) < 8+secretSize {
		return st
	}
	vv, rest, err := wire.DecodeVV(b[8+secretSize:])
	if err != nil || len(rest) != 0 {
		m.log.Warn("relay mail: unreadable peer state", "peer", peer.Short(), "err", err)
		return st
	}
	st.vv = vv
	if ns := int64(binary.BigEndian.Uint64(b)); ns != 0 {
		st.since = time.Unix(0, ns)
	}
	st.secret = decodeSecret(b[8:])
	return st
}

// secretSize is the encoding of a registry.Secret: generation, key.
const secretSize = 8 + registry.SecretSize

func appendSecret(b []byte, s registry.Secret) []byte {
	return append(binary.BigEndian.AppendUint64(b, s.Generation), s.Key[:]...)
}

func decodeSecret(b []byte) registry.Secret {
	s := registry.Secret{Generation: binary.BigEndian.Uint64(b)}
	copy(s.Key[:], b[8:secretSize])
	return s
}

const metaSecrets = "relay.mail.secrets"

// noteSecretLocked records the current secret among the generations mail
// is collected under (kept in the store: a restarted node still collects
// under the generation before).
func (m *Mailer) noteSecretLocked(ctx context.Context, cur registry.Secret) {
	if !m.loaded {
		m.loaded = true
		if b, err := m.cfg.Meta.Meta(ctx, metaSecrets); err == nil {
			for ; len(b) >= secretSize; b = b[secretSize:] {
				m.secrets = append(m.secrets, decodeSecret(b))
			}
		}
	}
	if len(m.secrets) > 0 && m.secrets[0].Generation >= cur.Generation {
		return
	}
	m.secrets = append([]registry.Secret{cur}, m.secrets...)[:min(len(m.secrets)+1, 2)]
	var b []byte
	for _, s := range m.secrets {
		b = appendSecret(b, s)
	}
	if err := m.cfg.Meta.SetMeta(ctx, metaSecrets, b); err != nil {
		m.log.Warn("relay mail: save mesh secret generations", "err", err)
	}
}

func (m *Mailer) saveLocked(ctx context.Context, peer core.DeviceID, st *peerState) {
	b := make([]byte, 8, 128)
	if !st.since.IsZero() {
		binary.BigEndian.PutUint64(b, uint64(st.since.UnixNano()))
	}
	b = appendSecret(b, st.secret)
	b = wire.AppendVV(b, st.vv)
	if err := m.cfg.Meta.SetMeta(ctx, metaPrefix+hex.EncodeToString(peer[:]), b); err != nil {
		m.log.Warn("relay mail: save peer state", "peer", peer.Short(), "err", err)
	}
}

// Run collects this device's mail at once, then every Interval collects
// and mails the offline peers, until ctx ends.
func (m *Mailer) Run(ctx context.Context) {
	for {
		if err := m.Round(ctx); err != nil && ctx.Err() == nil {
			m.log.Info("relay mail round", "err", err)
		}
		tick, stop := core.Wait(m.sched, m.cfg.Interval)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-tick:
		}
		stop()
	}
}

// Round collects and applies this device's mail, then mails every peer
// offline for OfflineAfter that lacks changes this device holds.
func (m *Mailer) Round(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, err := m.cfg.Secret()
	if err != nil {
		return fmt.Errorf("relay mail: %w", err)
	}
	m.noteSecretLocked(ctx, sec)
	conn, err := m.cfg.Dial(ctx)
	if err != nil {
		return fmt.Errorf("relay mail: %w", err)
	}
	defer conn.Close()
	return errors.Join(m.collect(ctx, conn), m.send(ctx, conn, sec))
}

// maxCollect bounds the mails read per mailbox per round.
const maxCollect = 1024

// letter is a collected, verified envelope and the transactions it holds.
type letter struct {
	mb     relay.Mailbox
	seq    uint64
	sender core.DeviceID
	txns   [][]core.Change
	bad    bool
}

func (m *Mailer) collect(ctx context.Context, conn Conn) error {
	now := relay.EpochAt(m.sched.Now(), m.cfg.Epoch)
	var letters []*letter
	for _, box := range m.mailboxes(now) {
		mb, e := box.mb, box.epoch
		cursor, n := uint64(0), 0
		for n < maxCollect {
			mails, next, err := conn.Collect(ctx, mb, cursor, relay.MaxCollect)
			if err != nil {
				return err
			}
			if len(mails) == 0 {
				break
			}
			for _, ml := range mails {
				letters = append(letters, m.open(ctx, mb, e, ml))
			}
			n += len(mails)
			cursor = next
		}
	}
	if len(letters) == 0 {
		return nil
	}
	m.received.Add(uint64(len(letters)))
	if err := m.apply(ctx, letters); err != nil {
		return err
	}
	vv, err := m.cfg.Replica.VersionVector(ctx)
	if err != nil {
		return err
	}
	acks := map[relay.Mailbox][]uint64{}
	pending := 0
	for _, l := range letters {
		if l.bad || heldAll(l.txns, vv) {
			acks[l.mb] = append(acks[l.mb], l.seq)
			if !l.bad {
				m.learnLocked(ctx, l.sender, l.txns)
			}
			continue
		}
		pending++
	}
	m.pending.Store(uint64(pending))
	for mb, seqs := range acks {
		n, err := conn.Ack(ctx, mb, seqs)
		m.acked.Add(uint64(n))
		if err != nil {
			return err
		}
	}
	return nil
}

type box struct {
	mb    relay.Mailbox
	epoch uint64
}

// mailboxes are this device's mailboxes to collect at epoch now: of this
// epoch and the one before, under the last two secret generations.
func (m *Mailer) mailboxes(now uint64) []box {
	var out []box
	for _, s := range m.secrets {
		for _, e := range []uint64{now, now - 1} {
			out = append(out, box{relay.MailboxFor(s.Key, s.Generation, m.self, e), e})
		}
	}
	return out
}

// open opens and checks one mail; a letter marked bad is refused.
func (m *Mailer) open(ctx context.Context, mb relay.Mailbox, epoch uint64, ml relay.Mail) *letter {
	l := &letter{mb: mb, seq: ml.Seq}
	refuse := func(why string, err error) *letter {
		m.refused.Add(1)
		m.log.Warn("relay mail: envelope refused", "why", why, "err", err)
		l.bad = true
		return l
	}
	lt, err := relay.Open(ml.Envelope, m.cfg.Ident, func(id core.DeviceID) (core.PublicKey, error) {
		if id == m.self {
			return core.PublicKey{}, errors.New("mail from this device itself")
		}
		return m.cfg.KeyOf(ctx, id)
	})
	if err != nil {
		return refuse("open", err)
	}
	if lt.Epoch != epoch {
		return refuse("epoch", fmt.Errorf("letter of epoch %d in the mailbox of %d", lt.Epoch, epoch))
	}
	l.sender = lt.Sender
	changes, err := wire.DecodeChanges(lt.Body)
	if err != nil {
		return refuse("changes", err)
	}
	if l.txns, err = splitTxns(changes); err != nil {
		return refuse("transactions", err)
	}
	return l
}

// splitTxns cuts changes into complete, valid transactions.
func splitTxns(changes []core.Change) ([][]core.Change, error) {
	var out [][]core.Change
	for len(changes) > 0 {
		n := int(changes[0].TxnLen)
		if n == 0 || n > len(changes) {
			return nil, fmt.Errorf("%w: incomplete transaction", core.ErrProtocol)
		}
		t := changes[:n:n]
		if err := replica.Txn(t).Validate(); err != nil {
			return nil, err
		}
		out = append(out, t)
		changes = changes[n:]
	}
	return out, nil
}

func heldAll(txns [][]core.Change, vv core.VersionVector) bool {
	for _, t := range txns {
		if t[len(t)-1].Seq > vv[t[0].Origin] {
			return false
		}
	}
	return true
}

// apply commits every transaction of the good letters that can be
// applied: in causal order across letters, whatever order they came in.
// A transaction the replica refuses marks its letter bad.
func (m *Mailer) apply(ctx context.Context, letters []*letter) error {
	type item struct {
		l *letter
		t []core.Change
	}
	var items []item
	for _, l := range letters {
		if l.bad {
			continue
		}
		for _, t := range l.txns {
			items = append(items, item{l, t})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if c := a.t[0].Origin.Compare(b.t[0].Origin); c != 0 {
			return c
		}
		return cmp.Compare(a.t[0].TxnFirst, b.t[0].TxnFirst)
	})
	for {
		vv, err := m.cfg.Replica.VersionVector(ctx)
		if err != nil {
			return err
		}
		next := vv.Clone()
		var batch []item
		for progress := true; progress; {
			progress = false
			for _, it := range items {
				o, first, last := it.t[0].Origin, it.t[0].TxnFirst, it.t[len(it.t)-1].Seq
				if it.l.bad || last <= next[o] || first != next[o]+1 || !depsHeld(it.t, next) {
					continue
				}
				batch = append(batch, it)
				next[o] = last
				progress = true
			}
		}
		if len(batch) == 0 {
			return nil
		}
		txns := make([][]core.Change, len(batch))
		for i, it := range batch {
			txns[i] = it.t
		}
		res, err := m.cfg.Replica.ApplyRemote(ctx, txns)
		if err == nil {
			m.applied.Add(uint64(res.Txns))
			continue
		}
		if ctx.Err() != nil || errors.Is(err, core.ErrClosed) {
			return err // not the letters' fault: they stay for the next round
		}
		// One of them is refused: find it, one transaction at a time.
		for _, it := range batch {
			if it.l.bad {
				continue
			}
			res, err := m.cfg.Replica.ApplyRemote(ctx, [][]core.Change{it.t})
			if err != nil && (ctx.Err() != nil || errors.Is(err, core.ErrClosed)) {
				return err
			}
			if err != nil {
				m.refused.Add(1)
				m.log.Warn("relay mail: transaction refused", "from", it.l.sender.Short(), "err", err)
				it.l.bad = true
				break
			}
			m.applied.Add(uint64(res.Txns))
		}
	}
}

func depsHeld(t []core.Change, next core.VersionVector) bool {
	o := t[0].Origin
	for _, c := range t {
		for d, seq := range c.Context {
			if d != o && seq > next[d] {
				return false
			}
		}
	}
	return true
}

// learnLocked records that sender holds every transaction it mailed.
func (m *Mailer) learnLocked(ctx context.Context, sender core.DeviceID, txns [][]core.Change) {
	st := m.loadLocked(ctx, sender)
	for _, t := range txns {
		if last := t[len(t)-1].Seq; last > st.vv[t[0].Origin] {
			st.vv[t[0].Origin] = last
		}
	}
	m.saveLocked(ctx, sender, st)
}

// maxLetters bounds the envelopes mailed to one peer per round.
const maxLetters = 64

// bodyBudget is what the mailer packs into one letter, with room for the
// Changes payload's dictionary and counts.
const bodyBudget = relay.MaxLetterBody - 4<<10

func (m *Mailer) send(ctx context.Context, conn Conn, sec registry.Secret) error {
	peers, err := m.cfg.Peers(ctx)
	if err != nil {
		return err
	}
	local, err := m.cfg.Replica.VersionVector(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range peers {
		if p == m.self || m.cfg.Online(p) {
			continue
		}
		st := m.loadLocked(ctx, p)
		if st.since.IsZero() || m.sched.Now().Sub(st.since) < m.cfg.OfflineAfter {
			continue // never seen offline (no session yet: nothing known of it), or not for long
		}
		if err := m.mailPeer(ctx, conn, sec, p, st, local); err != nil {
			errs = append(errs, fmt.Errorf("mail %s: %w", p.Short(), err))
		}
	}
	return errors.Join(errs...)
}

// mailPeer packs what peer lacks into letters and deposits them.
func (m *Mailer) mailPeer(ctx context.Context, conn Conn, sec registry.Secret, peer core.DeviceID, st *peerState, local core.VersionVector) error {
	key, err := m.cfg.KeyOf(ctx, peer)
	if err != nil {
		return err
	}
	epoch := relay.EpochAt(m.sched.Now(), m.cfg.Epoch)
	if st.secret.Generation != 0 && st.secret.Generation < sec.Generation {
		sec = st.secret // the peer may not know the newer one yet
	}
	mb := relay.MailboxFor(sec.Key, sec.Generation, peer, epoch)
	var body []core.Change
	size, letters := 0, 0
	raised := core.VersionVector{}
	flush := func() error {
		if len(body) == 0 {
			return nil
		}
		env, err := relay.Seal(relay.Letter{
			Sender: m.self, Recipient: peer, Epoch: epoch, Kind: relay.LetterChanges,
			Body: wire.AppendChanges(nil, body),
		}, m.cfg.Ident, key, m.cfg.Rand)
		if err != nil {
			return err
		}
		if _, err := conn.Deposit(ctx, mb, env); err != nil {
			return err
		}
		m.sent.Add(1)
		letters++
		for _, c := range body {
			raised[c.Origin] = max(raised[c.Origin], c.Seq)
		}
		st.vv.Merge(raised)
		m.saveLocked(ctx, peer, st)
		body, size = body[:0], 0
		return nil
	}
origins:
	for _, origin := range local.Devices() {
		if m.cfg.Replica.OriginDevice(origin) == peer {
			continue // the peer wrote them: it holds them
		}
		for after := st.vv[origin]; after < local[origin] && letters < maxLetters; {
			txns, err := m.readTxns(ctx, origin, after, local[origin])
			if err != nil {
				return err
			}
			if len(txns) == 0 {
				break
			}
			for _, t := range txns {
				if !m.admits(t) {
					m.log.Info("relay mail: a change of a collection that does not sync stops the mail of its origin", "origin", origin.Short())
					continue origins
				}
				ts := txnSize(t)
				if ts > bodyBudget {
					m.log.Info("relay mail: a transaction too large for an envelope; left to a session", "origin", origin.Short(), "bytes", ts)
					continue origins
				}
				if size+ts > bodyBudget {
					if err := flush(); err != nil {
						return err
					}
					if letters >= maxLetters {
						return nil
					}
				}
				body = append(body, t...)
				size += ts
				after = t[len(t)-1].Seq
			}
		}
	}
	return flush()
}

func (m *Mailer) admits(t []core.Change) bool {
	for _, c := range t {
		if !m.cfg.Syncs(c.Collection) {
			return false
		}
	}
	return true
}

func txnSize(t []core.Change) int {
	n := 0
	for _, c := range t {
		n += 64 + len(c.Collection) + len(c.Key) + len(c.Value) + 40*len(c.Context)
	}
	return n
}

// readTxns reads origin's complete transactions after sequence after (up
// to a batch), stopping at upTo.
func (m *Mailer) readTxns(ctx context.Context, origin core.DeviceID, after, upTo uint64) ([][]core.Change, error) {
	var out [][]core.Change
	var cur []core.Change
	next := after + 1
	err := m.cfg.Replica.Changes(ctx, origin, after, 2048, func(c core.Change) error {
		if c.Seq != next || c.Seq > upTo {
			return errStop
		}
		next++
		cur = append(cur, c)
		if len(cur) == int(c.TxnLen) {
			out = append(out, cur)
			cur = nil
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if len(out) == 0 && len(cur) > 0 {
		// A transaction longer than a read: read it whole.
		return m.readWhole(ctx, origin, cur)
	}
	return out, nil
}

var errStop = errors.New("stop")

func (m *Mailer) readWhole(ctx context.Context, origin core.DeviceID, cur []core.Change) ([][]core.Change, error) {
	want := int(cur[0].TxnLen)
	for len(cur) < want {
		n := len(cur)
		err := m.cfg.Replica.Changes(ctx, origin, cur[n-1].Seq, want-n, func(c core.Change) error {
			if c.Seq != cur[len(cur)-1].Seq+1 {
				return errStop
			}
			cur = append(cur, c)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
		if len(cur) == n {
			return nil, fmt.Errorf("relay mail: the changelog of %s ends inside a transaction", origin.Short())
		}
	}
	return [][]core.Change{cur}, nil
}
