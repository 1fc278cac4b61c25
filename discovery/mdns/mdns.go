package mdns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	hmdns "github.com/hashicorp/mdns"
	"github.com/miekg/dns"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
	"github.com/devicemesh/federation/registry"
)

// Purpose labels of the values this package derives from the mesh secret.
const (
	PurposeService  = "mdns/service"
	PurposeInstance = "mdns/instance"
	PurposeHost     = "mdns/host"
	PurposePort     = "mdns/port"
	// PurposeSeal is the purpose of the sealed announcement in the TXT.
	PurposeSeal = "mdns"
)

// Defaults.
const (
	// DefaultInterval is the time between two lookups.
	DefaultInterval = 2 * time.Second
	// DefaultQueryTime is how long one lookup listens for answers.
	DefaultQueryTime = time.Second
	// ttl is the TTL of every record served (seconds).
	ttl = 120
	// txtChunk is the longest TXT string written.
	txtChunk = 200
	// resealAfter is how long a sealed announcement is reused.
	resealAfter = 30 * time.Second
	// A run starts with burstLookups quick lookups (each listening
	// burstQuery, burstWait apart), so that devices starting together find
	// each other within a second or so, then settles to Config.Interval.
	burstLookups = 8
	burstQuery   = 300 * time.Millisecond
	burstWait    = 100 * time.Millisecond
)

// Config builds an MDNS.
type Config struct {
	// Mesh supplies the secret, the trusted keys, this device's identity and
	// its current addresses. Required.
	Mesh discovery.Mesh
	// Clock tells the time for epochs and announcements and runs the
	// lookup timer. nil: the system clock.
	Clock core.Clock
	// Period is the rotation period of every name. 0: discovery.DefaultPeriod.
	Period time.Duration
	// Interval is the time between lookups. 0: DefaultInterval.
	Interval time.Duration
	// QueryTime is how long a lookup listens for answers. 0: DefaultQueryTime.
	QueryTime time.Duration
	// Expire is how long a device may go unheard before it is reported
	// gone. 0: four intervals plus four query times.
	Expire time.Duration
	// Purpose prefixes every purpose label, so that a separate use (the
	// short-lived pairing announcement, say) gets names of its own. "":
	// none.
	Purpose string
	// AnyKey accepts announcements signed by any key, not only by devices
	// the Mesh trusts (discovery.OpenAny): for the pairing announcement,
	// whose secret comes from the code. Run reports nothing then; Find
	// returns what it hears.
	AnyKey bool
	// DisableIPv4 and DisableIPv6 turn one of the protocols off.
	DisableIPv4, DisableIPv6 bool
	// Rand supplies nonces (nil: crypto/rand).
	Rand io.Reader
	// Logger receives logs (nil: discarded), the library's at debug level.
	Logger *slog.Logger
}

// MDNS is a discovery mechanism on the local network. It implements
// core.Discoverer; one Run at a time.
type MDNS struct {
	cfg   Config
	sched core.Scheduler
	log   *slog.Logger
	guard discovery.Guard

	mu     sync.Mutex
	sealed map[string]sealedAt // by epoch and addresses
}

type sealedAt struct {
	blob []byte
	at   time.Time
}

var _ core.Discoverer = (*MDNS)(nil)

// ErrNoMesh reports a Config without a Mesh.
var ErrNoMesh = fmt.Errorf("mdns: %w: Config.Mesh is required", core.ErrInvalidConfig)

// New returns an MDNS; it starts nothing.
func New(cfg Config) (*MDNS, error) {
	if cfg.Mesh == nil {
		return nil, ErrNoMesh
	}
	if cfg.Clock == nil {
		cfg.Clock = core.SystemClock{}
	}
	if cfg.Period <= 0 {
		cfg.Period = discovery.DefaultPeriod
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.QueryTime <= 0 {
		cfg.QueryTime = DefaultQueryTime
	}
	if cfg.Expire <= 0 {
		cfg.Expire = 4 * (cfg.Interval + cfg.QueryTime)
	}
	if cfg.DisableIPv4 && cfg.DisableIPv6 {
		return nil, fmt.Errorf("mdns: %w: both IPv4 and IPv6 disabled", core.ErrInvalidConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &MDNS{cfg: cfg, sched: core.SchedulerOf(cfg.Clock), log: log, sealed: map[string]sealedAt{}}
	m.guard.MaxSkew = discovery.DefaultMaxSkew
	m.guard.MaxAge = max(discovery.DefaultMaxAge, 2*cfg.Period)
	return m, nil
}

func (m *MDNS) label(purpose string, epoch uint64, dev core.DeviceID) discovery.Label {
	return discovery.Label{Purpose: m.cfg.Purpose + purpose, Epoch: epoch, Device: dev}
}

// ServiceName returns the service (without domain) that mesh members
// answer for in epoch.
func (m *MDNS) ServiceName(sec registry.Secret, epoch uint64) string {
	return "_" + discovery.Name(sec, m.label(PurposeService, epoch, core.DeviceID{})) + "._udp"
}

// Run answers for this device and looks for its peers until ctx ends. It
// reports every verified sighting of a trusted device (Seen set to the
// announcement's time) and, once a device has gone unheard for
// Config.Expire, a PeerInfo with no addresses. self.Device must be the
// Mesh's device; the addresses announced are the Mesh's current ones.
func (m *MDNS) Run(ctx context.Context, self core.PeerInfo, found func(core.PeerInfo)) error {
	if self.Device != m.cfg.Mesh.DeviceID() {
		return fmt.Errorf("mdns: %w: self is not the Mesh's device", core.ErrInvalidArgument)
	}
	srv, err := hmdns.NewServer(&hmdns.Config{Zone: zone{m}, Logger: m.libLogger()})
	if err != nil {
		return fmt.Errorf("mdns: start responder: %w", err)
	}
	defer func() { _ = srv.Shutdown() }()
	seen := map[core.DeviceID]*sighting{}
	for n := 0; ; n++ {
		query, wait := m.cfg.QueryTime, m.cfg.Interval
		if n < burstLookups {
			query, wait = min(query, burstQuery), min(wait, burstWait)
		}
		err := m.lookup(ctx, query, func(a discovery.Announcement) {
			if !m.cfg.AnyKey {
				m.report(a, seen, found)
			}
		})
		if err != nil {
			return err
		}
		m.expire(seen, found)
		tick, stop := core.Wait(m.sched, wait)
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-tick:
		}
	}
}

type sighting struct {
	addrs []string
	heard time.Time // by this device's clock
	at    time.Time // the announcement's time
}

// Find looks (without answering) until it hears a fresh announcement from
// another device, and returns it, or until ctx ends.
func (m *MDNS) Find(ctx context.Context) (discovery.Announcement, error) {
	for n := 0; ; n++ {
		query, wait := m.cfg.QueryTime, m.cfg.Interval
		if n < burstLookups {
			query, wait = min(query, burstQuery), min(wait, burstWait)
		}
		var got *discovery.Announcement
		err := m.lookup(ctx, query, func(a discovery.Announcement) {
			if got == nil {
				got = &a
			}
		})
		if got != nil {
			return *got, nil
		}
		if err != nil {
			return discovery.Announcement{}, err
		}
		tick, stop := core.Wait(m.sched, wait)
		select {
		case <-ctx.Done():
			stop()
			return discovery.Announcement{}, ctx.Err()
		case <-tick:
		}
	}
}

// lookup queries the current service names once and hands every fresh,
// verified announcement of another device to heard.
func (m *MDNS) lookup(ctx context.Context, query time.Duration, heard func(discovery.Announcement)) error {
	sec, err := m.cfg.Mesh.Secret()
	if err != nil {
		m.log.Debug("mdns: no mesh secret yet; not looking", "err", err)
		return nil
	}
	now := m.cfg.Clock.Now()
	for _, e := range discovery.Epochs(now, m.cfg.Period, discovery.DefaultMaxSkew) {
		entries := make(chan *hmdns.ServiceEntry, 64)
		params := &hmdns.QueryParam{
			Service: m.ServiceName(sec, e), Domain: "local", Timeout: query,
			Entries: entries, DisableIPv4: m.cfg.DisableIPv4, DisableIPv6: m.cfg.DisableIPv6,
			Logger: m.libLogger(),
		}
		done := make(chan error, 1)
		go func() { done <- hmdns.QueryContext(ctx, params) }()
		var qerr error
	collect:
		for {
			select {
			case en := <-entries:
				m.open(sec, en, heard)
			case qerr = <-done:
				break collect
			}
		}
		for len(entries) > 0 {
			m.open(sec, <-entries, heard)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if qerr != nil {
			return fmt.Errorf("mdns: query: %w", qerr)
		}
	}
	return nil
}

// open opens one answer and hands it to heard if it is a fresh
// announcement of another (trusted, unless AnyKey) device.
func (m *MDNS) open(sec registry.Secret, en *hmdns.ServiceEntry, heard func(discovery.Announcement)) {
	blob, err := base64.RawStdEncoding.DecodeString(strings.Join(en.InfoFields, ""))
	if err != nil {
		return // not one of ours
	}
	var a discovery.Announcement
	if m.cfg.AnyKey {
		a, err = discovery.OpenAny(sec, m.cfg.Purpose+PurposeSeal, blob)
	} else {
		a, err = discovery.Open(sec, m.cfg.Purpose+PurposeSeal, blob, m.cfg.Mesh.TrustedKey)
	}
	if err != nil {
		m.log.Debug("mdns: ignoring an answer", "err", err)
		return
	}
	if a.Device == m.cfg.Mesh.DeviceID() {
		return
	}
	now := m.cfg.Clock.Now()
	if err := m.guard.Check(a, now); err != nil {
		m.log.Debug("mdns: ignoring an answer", "err", err)
		return
	}
	heard(a)
}

// report records a sighting and reports it.
func (m *MDNS) report(a discovery.Announcement, seen map[core.DeviceID]*sighting, found func(core.PeerInfo)) {
	now := m.cfg.Clock.Now()
	s := seen[a.Device]
	if s == nil {
		s = &sighting{}
		seen[a.Device] = s
	}
	if a.At.Before(s.at) {
		return
	}
	s.addrs, s.heard, s.at = a.Addrs, now, a.At
	found(core.PeerInfo{Device: a.Device, Addrs: slices.Clone(a.Addrs), Seen: a.At})
}

// expire reports the devices unheard for Config.Expire as gone.
func (m *MDNS) expire(seen map[core.DeviceID]*sighting, found func(core.PeerInfo)) {
	now := m.cfg.Clock.Now()
	for id, s := range seen {
		if now.Sub(s.heard) > m.cfg.Expire {
			delete(seen, id)
			found(core.PeerInfo{Device: id, Seen: s.at})
		}
	}
}

func (m *MDNS) libLogger() *log.Logger {
	return slog.NewLogLogger(m.log.Handler(), slog.LevelDebug)
}

// announcement returns the sealed announcement to serve in epoch e (cached
// for resealAfter while the addresses stay the same).
func (m *MDNS) announcement(sec registry.Secret, e uint64, now time.Time) ([]byte, error) {
	addrs := m.cfg.Mesh.Addrs()
	if len(addrs) > discovery.MaxAddrs {
		addrs = addrs[:discovery.MaxAddrs]
	}
	key := fmt.Sprintf("%d/%d/%s", sec.Generation, e, strings.Join(addrs, ","))
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.sealed[key]; ok && now.Sub(c.at) < resealAfter && !now.Before(c.at) {
		return c.blob, nil
	}
	blob, err := discovery.Seal(sec, m.cfg.Purpose+PurposeSeal, m.cfg.Mesh, addrs, now, m.cfg.Rand)
	if err != nil {
		return nil, err
	}
	clear(m.sealed) // one entry: the old ones are stale
	m.sealed[key] = sealedAt{blob: blob, at: now}
	return blob, nil
}

// zone answers mDNS questions for this device's current names.
type zone struct{ m *MDNS }

// Records answers a question about one of this device's current names.
func (z zone) Records(q dns.Question) []dns.RR {
	rrs, err := z.m.records(q)
	if err != nil && !errors.Is(err, discovery.ErrNoSecret) {
		z.m.log.Debug("mdns: cannot answer", "err", err)
	}
	return rrs
}

// names are one device's names in one epoch.
type names struct {
	service, instance, host string
	port                    uint16
}

// Names returns the names this device answers for in epoch e: service and
// instance (fully qualified), host, and SRV port.
func (m *MDNS) names(sec registry.Secret, e uint64) names {
	dev := m.cfg.Mesh.DeviceID()
	service := m.ServiceName(sec, e) + ".local."
	p := discovery.Key(sec, m.label(PurposePort, e, dev))
	return names{
		service:  service,
		instance: discovery.Name(sec, m.label(PurposeInstance, e, dev)) + "." + service,
		host:     discovery.Name(sec, m.label(PurposeHost, e, dev)) + ".local.",
		port:     1024 + (uint16(p[0])<<8|uint16(p[1]))%(65535-1024),
	}
}

func (m *MDNS) records(q dns.Question) ([]dns.RR, error) {
	sec, err := m.cfg.Mesh.Secret()
	if err != nil {
		return nil, err
	}
	now := m.cfg.Clock.Now()
	for _, e := range discovery.Epochs(now, m.cfg.Period, discovery.DefaultMaxSkew) {
		n := m.names(sec, e)
		var match bool
		switch {
		case strings.EqualFold(q.Name, n.service):
			match = q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY
		case strings.EqualFold(q.Name, n.instance):
			match = q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY
		case strings.EqualFold(q.Name, n.host):
			match = q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY
		}
		if !match {
			continue
		}
		blob, err := m.announcement(sec, e, now)
		if err != nil {
			return nil, err
		}
		return n.rrs(blob), nil
	}
	return nil, nil
}

// rrs is the whole answer: PTR, SRV, TXT and A, so one reply completes a
// lookup.
func (n names) rrs(blob []byte) []dns.RR {
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	return []dns.RR{
		&dns.PTR{Hdr: hdr(n.service, dns.TypePTR), Ptr: n.instance},
		&dns.SRV{Hdr: hdr(n.instance, dns.TypeSRV), Priority: 10, Weight: 1, Port: n.port, Target: n.host},
		&dns.TXT{Hdr: hdr(n.instance, dns.TypeTXT), Txt: chunk(base64.RawStdEncoding.EncodeToString(blob))},
		&dns.A{Hdr: hdr(n.host, dns.TypeA), A: net.IPv4zero.To4()},
	}
}

func chunk(s string) []string {
	var out []string
	for len(s) > txtChunk {
		out = append(out, s[:txtChunk])
		s = s[txtChunk:]
	}
	return append(out, s)
}
