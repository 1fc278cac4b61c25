package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/relay"
)

// MailConfig configures relay mail. Zero fields take the defaults in their
// comments.
type MailConfig struct {
	// Stream names the JetStream stream holding every mailbox. "FEDMAIL".
	Stream string
	// Subject is the subject prefix: mailbox m is Subject+"."+m. "fedmail".
	Subject string
	// TTL is how long a mail is kept unacknowledged (the stream's MaxAge).
	// 7 days.
	TTL time.Duration
	// MailboxQuota bounds the mails one mailbox holds (the stream's
	// per-subject limit; a full mailbox refuses new mail). 256.
	MailboxQuota int64
	// MaxBytes bounds the stream (all mailboxes); a full stream refuses
	// new mail. 1 GiB.
	MaxBytes int64
	// Replicas is the stream's replication factor. 0: 3 where the NATS
	// deployment can hold three replicas (a cluster of 3 nodes or more),
	// else 1 (the embedded server).
	Replicas int
	// ClientRate is the bytes of envelopes per second a client may
	// deposit over time, ClientBurst the most at once. 64 KiB/s, 16 MiB:
	// a flood from one client stops at its quota, others go on.
	ClientRate  float64
	ClientBurst int
	// ClientStreams bounds the mail streams one client holds open. 4.
	ClientStreams int
	// Idle closes a mail stream with no request for this long. 2 min.
	Idle time.Duration
	// Log receives the service's log (never a mailbox name or any
	// envelope byte). nil: discard.
	Log *slog.Logger
	// Metrics registers the fedrelay_mail_ series. nil: not exported.
	Metrics prometheus.Registerer
}

func (c MailConfig) withDefaults() MailConfig {
	if c.Stream == "" {
		c.Stream = "FEDMAIL"
	}
	if c.Subject == "" {
		c.Subject = "fedmail"
	}
	if c.TTL <= 0 {
		c.TTL = 7 * 24 * time.Hour
	}
	if c.MailboxQuota <= 0 {
		c.MailboxQuota = 256
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 30
	}
	if c.ClientRate <= 0 {
		c.ClientRate = 64 << 10
	}
	if c.ClientBurst <= 0 {
		c.ClientBurst = 16 << 20
	}
	c.ClientBurst = max(c.ClientBurst, relay.MaxEnvelope)
	if c.ClientStreams <= 0 {
		c.ClientStreams = 4
	}
	if c.Idle <= 0 {
		c.Idle = 2 * time.Minute
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// maxClients bounds the per-client state kept (quota buckets); past it the
// idle ones are forgotten.
const maxClients = 100_000

// Mail serves relay mail (streams of kind relay.KindMail): mailboxes are
// subjects of one JetStream stream, so that mail lives wherever the NATS
// deployment keeps it, the embedded server's disk or a replicated stream
// of an external cluster, and every fedrelay sharing that cluster serves
// the same mailboxes.
//
// What the relay holds of a mail: its mailbox pseudonym (the subject), its
// size bucket, when it arrived, and the sealed bytes. It keeps no record of
// which client deposited what: a client's identity only charges its quota.
type Mail struct {
	cfg    MailConfig
	js     jetstream.JetStream
	stream jetstream.Stream
	m      *mailMetrics

	mu      sync.Mutex
	clients map[string]*mailClient
}

type mailClient struct {
	bytes   *rate.Limiter
	streams int
}

// NewMail creates (or updates) the mail stream through js and returns the
// service (a StreamHandler for relay.KindMail).
func NewMail(ctx context.Context, js jetstream.JetStream, cfg MailConfig) (*Mail, error) {
	cfg = cfg.withDefaults()
	if cfg.Replicas <= 0 {
		m, err := newMail(ctx, js, cfg, 3)
		if err == nil {
			return m, nil
		}
		cfg.Log.Info("relay mail: a replicated stream is not possible here; one replica", "err", err)
		return newMail(ctx, js, cfg, 1)
	}
	return newMail(ctx, js, cfg, cfg.Replicas)
}

func newMail(ctx context.Context, js jetstream.JetStream, cfg MailConfig, replicas int) (*Mail, error) {
	cfg.Replicas = replicas
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 cfg.Stream,
		Description:          "federation relay mail: sealed envelopes by mailbox pseudonym",
		Subjects:             []string{cfg.Subject + ".*"},
		Retention:            jetstream.LimitsPolicy,
		Storage:              jetstream.FileStorage,
		MaxAge:               cfg.TTL,
		MaxBytes:             cfg.MaxBytes,
		MaxMsgsPerSubject:    cfg.MailboxQuota,
		MaxMsgSize:           int32(relay.MaxEnvelope + 1<<10), // and its headers
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Replicas:             cfg.Replicas,
		Duplicates:           min(2*time.Minute, cfg.TTL),
	})
	if err != nil {
		return nil, fmt.Errorf("relay mail stream: %w", err)
	}
	return &Mail{cfg: cfg, js: js, stream: st, m: newMailMetrics(cfg.Metrics), clients: map[string]*mailClient{}}, nil
}

// ServeStream serves a mail stream (StreamHandler): the client's quota is
// its credential's, shared by the devices of one mesh.
func (m *Mail) ServeStream(ctx context.Context, c ClientInfo, s io.ReadWriteCloser) error {
	return m.Serve(ctx, string(c.Credential), s)
}

// Replicas returns the mail stream's replication factor.
func (m *Mail) Replicas() int { return m.cfg.Replicas }

func (m *Mail) subject(mb relay.Mailbox) string { return m.cfg.Subject + "." + mb.String() }

// Serve speaks the mail protocol on s (its kind byte read already) for
// client, the client's pseudonymous credential id, until the client closes
// the stream, it idles, or ctx ends. It closes s.
func (m *Mail) Serve(ctx context.Context, client string, s io.ReadWriteCloser) error {
	defer s.Close()
	if !m.open(client) {
		// Answer the first request, so that the client hears why.
		if _, err := wire.ReadFrame(s, nil, relay.MaxMailFrame); err == nil {
			_ = wire.WriteFrame(s, relay.TypeMailErr, relay.AppendMailErr(nil, relay.MailQuota, "too many mail streams"))
		}
		return fmt.Errorf("relay mail: %w: too many streams", relay.ErrClientQuota)
	}
	defer m.close(client)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	idle := time.AfterFunc(m.cfg.Idle, cancel)
	defer idle.Stop()
	var buf []byte
	for {
		f, err := wire.ReadFrame(s, buf, relay.MaxMailFrame)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("relay mail: %w", err)
		}
		idle.Reset(m.cfg.Idle)
		buf = f.Payload[:0]
		req, err := relay.DecodeMailRequest(f.Type, f.Payload)
		if err == nil {
			err = m.serve(ctx, client, req, s)
		}
		if err != nil {
			code := relay.MailCodeOf(err)
			m.m.refused.WithLabelValues(reasonLabel(code)).Inc()
			if code == relay.MailUnavailable {
				m.cfg.Log.Warn("relay mail", "err", err)
			}
			if werr := wire.WriteFrame(s, relay.TypeMailErr, relay.AppendMailErr(nil, code, reason(code))); werr != nil {
				return werr
			}
			if code == relay.MailBadRequest {
				return err
			}
		}
	}
}

func reasonLabel(c relay.MailCode) string {
	switch c {
	case relay.MailBadRequest:
		return "malformed"
	case relay.MailFull:
		return "full"
	case relay.MailQuota:
		return "quota"
	case relay.MailTooLarge:
		return "size"
	}
	return "unavailable"
}

// reason is the text sent with a code: fixed, so that no error text of
// the store (which may name a subject) reaches the wire.
func reason(c relay.MailCode) string {
	switch c {
	case relay.MailBadRequest:
		return "malformed request"
	case relay.MailFull:
		return "mailbox full"
	case relay.MailQuota:
		return "client quota exceeded"
	case relay.MailTooLarge:
		return "not an envelope size"
	}
	return "mail store unavailable"
}

func (m *Mail) serve(ctx context.Context, client string, req relay.MailRequest, s io.Writer) error {
	switch req.Type {
	case relay.TypeMailDeposit:
		seq, err := m.Deposit(ctx, client, req.Mailbox, req.Envelope)
		if err != nil {
			return err
		}
		return wire.WriteFrame(s, relay.TypeMailOK, binary.AppendUvarint(nil, seq))
	case relay.TypeMailCollect:
		next := req.After
		err := m.Collect(ctx, req.Mailbox, req.After, req.Max, func(ml relay.Mail) error {
			next = ml.Seq
			return wire.WriteFrame(s, relay.TypeMailItem, relay.AppendMailItem(nil, ml))
		})
		if err != nil {
			return err
		}
		return wire.WriteFrame(s, relay.TypeMailEnd, binary.AppendUvarint(nil, next))
	case relay.TypeMailAck:
		n, err := m.Ack(ctx, req.Mailbox, req.Seqs)
		if err != nil {
			return err
		}
		return wire.WriteFrame(s, relay.TypeMailOK, binary.AppendUvarint(nil, uint64(n)))
	}
	return fmt.Errorf("%w: %v", core.ErrProtocol, req.Type)
}

// open counts a mail stream of client, false when it holds too many.
func (m *Mail) open(client string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.clientLocked(client)
	if c.streams >= m.cfg.ClientStreams {
		return false
	}
	c.streams++
	return true
}

func (m *Mail) close(client string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.clients[client]; c != nil {
		c.streams--
	}
}

func (m *Mail) clientLocked(client string) *mailClient {
	c := m.clients[client]
	if c == nil {
		if len(m.clients) >= maxClients {
			for id, o := range m.clients {
				// Forget a client with no stream open and a full bucket:
				// it costs nothing to recreate.
				if o.streams == 0 && o.bytes.Tokens() >= float64(m.cfg.ClientBurst) {
					delete(m.clients, id)
				}
			}
		}
		c = &mailClient{bytes: rate.NewLimiter(rate.Limit(m.cfg.ClientRate), m.cfg.ClientBurst)}
		m.clients[client] = c
	}
	return c
}

// charge takes n bytes from client's quota.
func (m *Mail) charge(client string, n int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.clientLocked(client).bytes.AllowN(time.Now(), n) {
		return fmt.Errorf("relay mail: %w", relay.ErrClientQuota)
	}
	return nil
}

// publishRetry bounds how long a deposit waits for the stream to accept
// it (a cluster electing a new leader after losing a node).
const publishRetry = 15 * time.Second

// Deposit stores env in mailbox mb, charged to client's quota, and returns
// its sequence number. The same envelope deposited twice within two
// minutes is stored once.
func (m *Mail) Deposit(ctx context.Context, client string, mb relay.Mailbox, env []byte) (uint64, error) {
	if !relay.ValidEnvelopeSize(len(env)) {
		return 0, fmt.Errorf("relay mail: %w: %d bytes", relay.ErrEnvelopeSize, len(env))
	}
	if err := m.charge(client, len(env)); err != nil {
		return 0, err
	}
	sum := sha256.Sum256(env)
	id := hex.EncodeToString(sum[:16])
	deadline := time.Now().Add(publishRetry)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		ack, err := m.js.Publish(ctx, m.subject(mb), env, jetstream.WithMsgID(id))
		if err == nil {
			m.m.deposited.Inc()
			m.m.bytes.Add(float64(len(env)))
			return ack.Sequence, nil
		}
		if full := storeFull(err); full != nil || time.Now().After(deadline) || ctx.Err() != nil {
			if full != nil {
				return 0, full
			}
			return 0, fmt.Errorf("relay mail deposit: %w: %w", relay.ErrMailUnavailable, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// storeFull maps the store's refusals of a deposit to the protocol's
// errors; nil for anything else (worth a retry).
func storeFull(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "maximum messages per subject"):
		return fmt.Errorf("relay mail: %w", relay.ErrMailboxFull)
	case strings.Contains(msg, "maximum bytes"), strings.Contains(msg, "maximum messages exceeded"),
		strings.Contains(msg, "resource limits"):
		return fmt.Errorf("relay mail: %w: the relay's store is full", relay.ErrMailboxFull)
	case strings.Contains(msg, "message size exceeds"):
		return fmt.Errorf("relay mail: %w", relay.ErrEnvelopeSize)
	}
	return nil
}

// Collect calls fn for up to limit mails of mb after sequence after, in
// order.
func (m *Mail) Collect(ctx context.Context, mb relay.Mailbox, after uint64, limit int, fn func(relay.Mail) error) error {
	subj := m.subject(mb)
	seq := after + 1
	for i := 0; i < limit && seq > after; i++ {
		msg, err := m.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("relay mail collect: %w: %w", relay.ErrMailUnavailable, err)
		}
		if msg.Subject != subj || msg.Sequence < seq || !relay.ValidEnvelopeSize(len(msg.Data)) {
			return fmt.Errorf("relay mail collect: %w: store returned another mail", relay.ErrMailUnavailable)
		}
		if err := fn(relay.Mail{Seq: msg.Sequence, Envelope: msg.Data}); err != nil {
			return err
		}
		m.m.collected.Inc()
		seq = msg.Sequence + 1
	}
	return nil
}

// Ack deletes the mails seqs of mailbox mb (a sequence number of another
// mailbox, or of a mail gone already, is passed over) and returns how
// many it deleted.
func (m *Mail) Ack(ctx context.Context, mb relay.Mailbox, seqs []uint64) (int, error) {
	subj := m.subject(mb)
	n := 0
	for _, seq := range seqs {
		msg, err := m.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("relay mail ack: %w: %w", relay.ErrMailUnavailable, err)
		}
		if msg.Subject != subj {
			continue
		}
		// Overwritten on disk, not only marked deleted.
		if err := m.stream.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("relay mail ack: %w: %w", relay.ErrMailUnavailable, err)
		}
		m.m.acked.Inc()
		n++
	}
	return n, nil
}
