package dht

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/registry"
)

// Purpose is the discovery purpose label of this mechanism: sealed
// announcements are made for it (discovery.Seal), so a blob read from the
// DHT cannot be replayed on the LAN and the other way round.
const Purpose = "dht"

// itemPurpose labels the derivation of the per-device, per-epoch BEP 44
// signing keys.
const itemPurpose = "dht/item"

// Defaults of Config.
const (
	// DefaultRepublish is how often a device puts its item again (BEP 44
	// nodes drop items after two hours; the anacrolix default).
	DefaultRepublish = 10 * time.Minute
	// DefaultLookup is how often a device looks up the others' items.
	DefaultLookup = time.Minute
	// DefaultOpTimeout bounds one put or one lookup of one item.
	DefaultOpTimeout = 30 * time.Second
	// DefaultWithdrawTimeout bounds the withdrawal put when Run ends.
	DefaultWithdrawTimeout = 5 * time.Second
)

// firstLookupGap is the wait before the second lookup after Run starts;
// it doubles up to Config.Lookup.
const firstLookupGap = 2 * time.Second

// ValueSize is the length of every value this mechanism stores in the DHT:
// the sealed announcement followed by random bytes, so that outsiders see
// values of one size whatever the addresses inside (discovery.Seal pads to
// a bucket only).
const ValueSize = discovery.MaxSealed

// sealOverhead is the length of a sealed announcement minus its padded
// plaintext (version, XChaCha20 nonce, Poly1305 tag; see discovery.Seal).
const sealOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// PublicBootstrap returns well-known routers of the public mainline DHT.
// They are never used unless a host passes them as Config.Bootstrap.
func PublicBootstrap() []string {
	return []string{
		"router.bittorrent.com:6881",
		"router.utorrent.com:6881",
		"dht.transmissionbt.com:6881",
		"dht.libtorrent.org:25401",
	}
}

// Config configures a Discoverer.
type Config struct {
	// Mesh gives the mesh secret, the trusted keys and this device's
	// addresses, read at every publication and lookup. Required.
	Mesh discovery.Mesh
	// Devices lists the devices to look for (this device is skipped, and
	// so is any the Mesh does not trust), read at every lookup. Required.
	Devices func() []core.DeviceID
	// Bootstrap lists DHT nodes ("host:port") to join the DHT through.
	// Required: there is no default (PublicBootstrap() joins the public
	// mainline DHT).
	Bootstrap []string
	// Listen is the UDP address of this device's DHT node ("": any port).
	Listen string
	// Period is the rotation period of the item keys (0:
	// discovery.DefaultPeriod).
	Period time.Duration
	// Republish is how often this device's item is put again (0:
	// DefaultRepublish). It is also put at every epoch start and as soon as
	// the addresses or the secret generation change (seen at each lookup).
	Republish time.Duration
	// Lookup is how often the other devices' items are read (0:
	// DefaultLookup), once Run has warmed up: after the start, lookups come
	// 2 s, 4 s, 8 s ... apart until they are Lookup apart.
	Lookup time.Duration
	// Expire is the age past which an announcement no longer counts: the
	// device is reported gone (0: three times Republish).
	Expire time.Duration
	// Slack is the clock difference tolerated between devices: lookups read
	// the items of every epoch within Slack of now (0:
	// discovery.DefaultMaxSkew).
	Slack time.Duration
	// OpTimeout bounds one put or one item lookup (0: DefaultOpTimeout).
	OpTimeout time.Duration
	// Clock reads the time and, when a core.Scheduler, runs the timers.
	// nil: the system clock.
	Clock core.Clock
	// Rand supplies nonces and padding (nil: crypto/rand).
	Rand io.Reader
	// Logger receives the mechanism's logs (nil: discarded).
	Logger *slog.Logger
}

// Discoverer is the DHT mechanism: a core.Discoverer. See the package
// documentation for the scheme.
type Discoverer struct {
	cfg   Config
	sched core.Scheduler
	log   *slog.Logger

	mu   sync.Mutex
	addr string // this device's DHT node while Run runs
}

var _ core.Discoverer = (*Discoverer)(nil)

// New checks cfg and returns a Discoverer.
func New(cfg Config) (*Discoverer, error) {
	if cfg.Mesh == nil || cfg.Devices == nil {
		return nil, fmt.Errorf("dht: Mesh and Devices are required: %w", core.ErrInvalidConfig)
	}
	if len(cfg.Bootstrap) == 0 {
		return nil, ErrNoBootstrap
	}
	if cfg.Period <= 0 {
		cfg.Period = discovery.DefaultPeriod
	}
	if cfg.Republish <= 0 {
		cfg.Republish = DefaultRepublish
	}
	if cfg.Lookup <= 0 {
		cfg.Lookup = DefaultLookup
	}
	if cfg.Expire <= 0 {
		cfg.Expire = 3 * cfg.Republish
	}
	if cfg.Slack <= 0 {
		cfg.Slack = discovery.DefaultMaxSkew
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Bootstrap = slices.Clone(cfg.Bootstrap)
	return &Discoverer{cfg: cfg, sched: core.SchedulerOf(cfg.Clock), log: logger}, nil
}

// Addr returns the UDP address of this device's DHT node while Run runs
// ("" otherwise): other DHT nodes may bootstrap off it.
func (d *Discoverer) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// ItemKey returns the Ed25519 key pair that signs device's BEP 44 item in
// epoch under sec: its seed is derived from the mesh secret, the epoch and
// the device (discovery.Key with purpose "dht/item"), so every member
// computes every device's key and target, and nobody else links two of
// them. The item's target is SHA-1 of the public key (no salt).
func ItemKey(sec registry.Secret, epoch uint64, device core.DeviceID) ed25519.PrivateKey {
	seed := discovery.Key(sec, discovery.Label{Purpose: itemPurpose, Epoch: epoch, Device: device})
	return ed25519.NewKeyFromSeed(seed[:])
}

// published is what this device last put, to withdraw it when the secret
// generation changes or Run ends.
type published struct {
	sec   registry.Secret
	epoch uint64
	addrs []string
}

// seen is what a lookup knows of another device.
type seen struct {
	addrs []string
	at    time.Time
}

// run is the state of one Run.
type run struct {
	d     *Discoverer
	n     *node
	self  core.DeviceID
	addrs []string // self's addresses given to Run, used when the Mesh has none
	found func(core.PeerInfo)
	guard discovery.Guard

	last  *published
	known map[core.DeviceID]seen
}

// Run joins the DHT with a node of its own, publishes this device's sealed
// announcement and looks up the trusted devices' ones until ctx ends; then
// it withdraws the announcement and returns ctx.Err(). It fails at once
// when the node cannot listen.
func (d *Discoverer) Run(ctx context.Context, self core.PeerInfo, found func(core.PeerInfo)) error {
	n, err := startNode(d.cfg.Listen, d.cfg.Bootstrap, d.log)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.addr = n.addr().String()
	d.mu.Unlock()
	defer func() {
		n.close()
		d.mu.Lock()
		d.addr = ""
		d.mu.Unlock()
	}()
	r := &run{
		d: d, n: n, self: d.cfg.Mesh.DeviceID(), addrs: slices.Clone(self.Addrs), found: found,
		guard: discovery.Guard{MaxAge: d.cfg.Expire, MaxSkew: d.cfg.Slack},
		known: map[core.DeviceID]seen{},
	}
	nextPublish := d.sched.Now()
	gap := firstLookupGap
	for {
		now := d.sched.Now()
		if !now.Before(nextPublish) || r.changed() {
			ok := r.publish(ctx)
			now = d.sched.Now()
			nextPublish = now.Add(d.cfg.Republish)
			if !ok {
				nextPublish = now.Add(min(gap, d.cfg.Lookup)) // try again soon
			}
			if start := discovery.EpochStart(discovery.Epoch(now, d.cfg.Period)+1, d.cfg.Period); start.Before(nextPublish) {
				nextPublish = start
			}
		}
		r.lookup(ctx)
		if ctx.Err() != nil {
			break
		}
		// Right after the start, look again soon and then less and less
		// often (2 s, 4 s, ... up to Lookup): devices starting together
		// find each other quickly whichever publishes first.
		gap = min(gap, d.cfg.Lookup)
		wait := min(gap, max(nextPublish.Sub(d.sched.Now()), 0))
		gap *= 2
		ch, stop := core.Wait(d.sched, wait)
		select {
		case <-ctx.Done():
		case <-ch:
		}
		stop()
		if ctx.Err() != nil {
			break
		}
	}
	r.withdraw()
	return ctx.Err()
}

// addrsNow returns the addresses to announce: the Mesh's (or those given
// to Run), and the public address the DHT nodes see this device at.
func (r *run) addrsNow() []string {
	a := r.d.cfg.Mesh.Addrs()
	if len(a) == 0 {
		a = slices.Clone(r.addrs)
	}
	if ip, ok := r.n.publicIP(); ok {
		a = withPublic(a, ip)
	}
	return a
}

// withPublic appends ip with the port of the first of addrs, unless the
// list holds it already or is full: behind a NAT that keeps ports (or with
// the port forwarded) devices elsewhere on the internet reach this one
// there; the local addresses stay first for devices on the same network.
func withPublic(addrs []string, ip netip.Addr) []string {
	if len(addrs) == 0 || len(addrs) >= discovery.MaxAddrs {
		return addrs
	}
	_, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return addrs
	}
	pub := net.JoinHostPort(ip.String(), port)
	if slices.Contains(addrs, pub) {
		return addrs
	}
	return append(addrs, pub)
}

// changed reports whether the addresses or the secret generation differ
// from what was last published.
func (r *run) changed() bool {
	if r.last == nil {
		return false // the first publication is due anyway, or failed
	}
	sec, err := r.d.cfg.Mesh.Secret()
	if err != nil {
		return false
	}
	return sec.Generation != r.last.sec.Generation || !slices.Equal(r.addrsNow(), r.last.addrs)
}

// opCtx bounds one DHT operation by OpTimeout on the scheduler.
func (r *run) opCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	t := r.d.sched.AfterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

// value seals an announcement of addrs under sec and pads it to ValueSize
// with random bytes.
func (r *run) value(sec registry.Secret, addrs []string) ([]byte, error) {
	blob, err := discovery.Seal(sec, Purpose, r.d.cfg.Mesh, addrs, r.d.sched.Now(), r.d.cfg.Rand)
	if err != nil {
		return nil, err
	}
	v := make([]byte, ValueSize)
	copy(v, blob)
	if _, err := io.ReadFull(r.d.cfg.Rand, v[len(blob):]); err != nil {
		return nil, fmt.Errorf("dht: padding: %w", err)
	}
	return v, nil
}

// publish puts this device's announcement under the current epoch's key,
// after withdrawing the previous generation's one when the secret rotated.
// It reports whether the put went out.
func (r *run) publish(ctx context.Context) bool {
	sec, err := r.d.cfg.Mesh.Secret()
	if err != nil {
		r.d.log.Debug("dht: nothing to publish without a mesh secret", "err", err)
		return false
	}
	if r.last != nil && r.last.sec.Generation != sec.Generation {
		// A revoked device still holds the old secret: leave it an
		// announcement without addresses where it would look.
		r.putAnnouncement(ctx, r.last.sec, r.last.epoch, nil)
	}
	addrs := r.addrsNow()
	epoch := discovery.Epoch(r.d.sched.Now(), r.d.cfg.Period)
	if err := r.putAnnouncement(ctx, sec, epoch, addrs); err != nil {
		r.d.log.Debug("dht: publish failed", "err", err)
		return false
	}
	r.last = &published{sec: sec, epoch: epoch, addrs: addrs}
	return true
}

// putAnnouncement seals addrs (none: a withdrawal) and puts them as this
// device's item of epoch under sec.
func (r *run) putAnnouncement(ctx context.Context, sec registry.Secret, epoch uint64, addrs []string) error {
	v, err := r.value(sec, addrs)
	if err != nil {
		return fmt.Errorf("dht: seal: %w", err)
	}
	octx, cancel := r.opCtx(ctx, r.d.cfg.OpTimeout)
	defer cancel()
	return r.n.put(octx, ItemKey(sec, epoch, r.self), v)
}

// withdraw replaces what this device last published by an announcement
// without addresses, so that the others see it go at their next lookup
// rather than when it expires.
func (r *run) withdraw() {
	if r.last == nil {
		return
	}
	ctx, cancel := r.opCtx(context.Background(), DefaultWithdrawTimeout)
	defer cancel()
	if err := r.putAnnouncement(ctx, r.last.sec, r.last.epoch, nil); err != nil {
		r.d.log.Debug("dht: withdraw failed", "err", err)
	}
}

// lookup reads every trusted device's items of the epochs around now and
// reports what appeared, changed or went.
func (r *run) lookup(ctx context.Context) {
	sec, secErr := r.d.cfg.Mesh.Secret()
	var ids []core.DeviceID
	for _, id := range r.d.cfg.Devices() {
		if _, ok := r.d.cfg.Mesh.TrustedKey(id); ok && id != r.self && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for id := range r.known {
		if !slices.Contains(ids, id) {
			delete(r.known, id) // no longer trusted: never reported again
			r.guard.Forget(id)
		}
	}
	if secErr != nil {
		// Without the secret nothing can be read: every device is gone.
		for id, s := range r.known {
			r.report(id, nil, s.at)
		}
		return
	}
	now := r.d.sched.Now()
	epochs := discovery.Epochs(now, r.d.cfg.Period, r.d.cfg.Slack)
	results := make([]*discovery.Announcement, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.newest(ctx, sec, id, epochs)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now = r.d.sched.Now()
	for i, id := range ids {
		a := results[i]
		if a != nil && r.guard.Check(*a, now) != nil {
			a = nil // too old, from the future, or older than one accepted
		}
		prev, had := r.known[id]
		switch {
		case a != nil && len(a.Addrs) > 0:
			r.known[id] = seen{addrs: a.Addrs, at: a.At}
			if !had || !slices.Equal(prev.addrs, a.Addrs) || a.At.After(prev.at) {
				// New, moved, or republished: the sighting time moves on
				// (the node's last_seen) once per republication.
				r.report(id, a.Addrs, a.At)
			}
		case a != nil: // withdrawn
			if had {
				r.report(id, nil, a.At)
			}
		case had && now.Sub(prev.at) > r.d.cfg.Expire:
			r.report(id, nil, prev.at)
		}
	}
}

// report tells found about id and updates what is known: addrs nil means
// gone.
func (r *run) report(id core.DeviceID, addrs []string, at time.Time) {
	if addrs == nil {
		delete(r.known, id)
	}
	r.found(core.PeerInfo{Device: id, Addrs: slices.Clone(addrs), Seen: at})
}

// newest returns the newest announcement of id found in its items of
// epochs, or nil.
func (r *run) newest(ctx context.Context, sec registry.Secret, id core.DeviceID, epochs []uint64) *discovery.Announcement {
	var best *discovery.Announcement
	for _, e := range epochs {
		octx, cancel := r.opCtx(ctx, r.d.cfg.OpTimeout)
		v, err := r.n.get(octx, ItemKey(sec, e, id).Public().(ed25519.PublicKey))
		cancel()
		if err != nil {
			if !errors.Is(err, errNotFound) {
				r.d.log.Debug("dht: lookup failed", "device", id.Short(), "epoch", e, "err", err)
			}
			continue
		}
		a, err := open(sec, v, r.d.cfg.Mesh.TrustedKey)
		if err != nil || a.Device != id {
			r.d.log.Debug("dht: unusable item", "device", id.Short(), "epoch", e, "err", err)
			continue
		}
		if best == nil || a.At.After(best.At) {
			best = &a
		}
	}
	return best
}

// open finds the sealed announcement at the start of a padded value: it
// tries each length a sealed blob can have (the padding is random, so only
// the right length authenticates).
func open(sec registry.Secret, v []byte, trusted func(core.DeviceID) (core.PublicKey, bool)) (discovery.Announcement, error) {
	err := discovery.ErrNotMember
	for l := sealOverhead + discovery.SealBucket; l <= len(v) && l <= discovery.MaxSealed; l += discovery.SealBucket {
		a, e := discovery.Open(sec, Purpose, v[:l], trusted)
		if e == nil {
			return a, nil
		}
		if !errors.Is(e, discovery.ErrNotMember) {
			return discovery.Announcement{}, e
		}
		err = e
	}
	return discovery.Announcement{}, err
}
