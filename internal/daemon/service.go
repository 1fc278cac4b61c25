// Package daemon is fednode's API: one implementation (Service) of the
// devicemesh.federation.v1 schema over a *federation.Node, served by two
// front doors: Connect (Handler: gRPC, gRPC-Web and the Connect protocol
// from one http.Handler, for a Unix socket or loopback TCP with a bearer
// token) and NATS (ServeNATS: request/reply per method, events per
// collection). Both front doors decode requests with Decode, which refuses
// unknown fields, and map errors to Connect codes with ToConnectError.
package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/devicemesh/federation"
	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/crdt"
	"github.com/devicemesh/federation/pairing"
	"github.com/devicemesh/federation/registry"
)

// Limits of the API, beyond the node's own (core.MaxValueLen and friends).
const (
	// MaxBatchWrites bounds the writes of one Batch.
	MaxBatchWrites = 10000
	// DefaultScanPage is a Scan page when the request sets no limit, and
	// MaxScanPage the largest page.
	DefaultScanPage = 1000
	MaxScanPage     = 10000
	// MaxRequestBytes bounds one request message on the wire: a Batch of
	// large values must be split.
	MaxRequestBytes = 16 << 20
	// backupChunk is the size of a Backup stream message.
	backupChunk = 256 << 10
)

// ErrUnimplemented reports a method this daemon build cannot serve.
var ErrUnimplemented = errors.New("unimplemented")

// Fetcher brings the values of on-demand records to this device (selective
// sync's Node.Fetch). The daemon serves Fetch through it.
type Fetcher interface {
	Fetch(ctx context.Context, collection string, keys ...string) error
}

// Options tune a Service. The zero value is usable.
type Options struct {
	// Fetcher serves Fetch; nil answers it with CodeUnimplemented.
	Fetcher Fetcher
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Poll is how often the service looks at the node's sessions and
	// registry to raise connect, disconnect, sync-progress and registry
	// events. 0 means 250 ms.
	Poll time.Duration
	// PairWait bounds how long an approved pairing waits for the new device
	// to show up as trusted before the stream reports it. 0 means 30 s.
	PairWait time.Duration
}

// Service implements the API over one node. Create it with New; Close it
// before closing the node.
type Service struct {
	node *federation.Node
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]chan bool // pairing requests waiting for Approve
	watch   *watcher

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New returns a Service over node and starts its session and registry
// watcher.
func New(node *federation.Node, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	if opts.PairWait <= 0 {
		opts.PairWait = 30 * time.Second
	}
	s := &Service{node: node, opts: opts, log: opts.Logger, pending: map[string]chan bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.watch = newWatcher(node, opts.Poll)
	go func() {
		defer close(s.done)
		s.watch.run(s.stop)
	}()
	return s
}

// Close stops the watcher and ends every Subscribe stream. Idempotent.
func (s *Service) Close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
}

// Node returns the node the service serves.
func (s *Service) Node() *federation.Node { return s.node }

// ToConnectError maps a node error to a Connect error with the matching
// code; nil stays nil and a *connect.Error is returned unchanged.
func ToConnectError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeInternal
	switch {
	case errors.Is(err, core.ErrInvalidArgument), errors.Is(err, conflict.ErrInvalidArgument), errors.Is(err, crdt.ErrInvalidArgument), errors.Is(err, crdt.ErrMalformed), errors.Is(err, conflict.ErrMalformed),
		errors.Is(err, registry.ErrMalformed):
		code = connect.CodeInvalidArgument
	case errors.Is(err, core.ErrNotFound), errors.Is(err, federation.ErrNoConflict):
		code = connect.CodeNotFound
	case errors.Is(err, core.ErrClosed):
		code = connect.CodeUnavailable
	case errors.Is(err, federation.ErrNotStarted), errors.Is(err, federation.ErrReentrantWrite):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, pairing.ErrAborted):
		code = connect.CodeAborted
	case errors.Is(err, core.ErrUnauthorized):
		code = connect.CodePermissionDenied
	case errors.Is(err, ErrUnimplemented), errors.Is(err, errors.ErrUnsupported):
		code = connect.CodeUnimplemented
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	}
	return connect.NewError(code, err)
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func record(r core.Record) *v1.Record {
	return &v1.Record{Collection: r.Collection, Key: r.Key, Value: r.Value, Deleted: r.Deleted,
		Timestamp: uint64(r.Timestamp), Origin: r.Origin.String(), Seq: r.Seq}
}

// Put writes one value.
func (s *Service) Put(ctx context.Context, req *v1.PutRequest) (*v1.PutResponse, error) {
	if err := s.node.Put(ctx, req.GetCollection(), req.GetKey(), req.GetValue()); err != nil {
		return nil, ToConnectError(err)
	}
	return &v1.PutResponse{}, nil
}

// Get reads one record.
func (s *Service) Get(ctx context.Context, req *v1.GetRequest) (*v1.GetResponse, error) {
	if err := core.ValidateKey(req.GetCollection(), req.GetKey(), 0); err != nil {
		return nil, ToConnectError(err)
	}
	r, err := s.node.GetRecord(ctx, req.GetCollection(), req.GetKey())
	if err != nil {
		return nil, ToConnectError(err)
	}
	if r.Deleted && !req.GetIncludeDeleted() {
		return nil, ToConnectError(fmt.Errorf("get %s/%q: %w", req.GetCollection(), req.GetKey(), core.ErrNotFound))
	}
	return &v1.GetResponse{Record: record(r)}, nil
}

// Delete writes a tombstone.
func (s *Service) Delete(ctx context.Context, req *v1.DeleteRequest) (*v1.DeleteResponse, error) {
	if err := s.node.Delete(ctx, req.GetCollection(), req.GetKey()); err != nil {
		return nil, ToConnectError(err)
	}
	return &v1.DeleteResponse{}, nil
}

// Batch applies writes atomically.
func (s *Service) Batch(ctx context.Context, req *v1.BatchRequest) (*v1.BatchResponse, error) {
	ws := req.GetWrites()
	if len(ws) == 0 {
		return nil, invalid("batch: no writes")
	}
	if len(ws) > MaxBatchWrites {
		return nil, invalid("batch: %d writes exceed %d", len(ws), MaxBatchWrites)
	}
	for i, w := range ws {
		if w.GetDelete() && len(w.GetValue()) > 0 {
			return nil, invalid("batch: write %d: delete with a value", i)
		}
	}
	err := s.node.Update(ctx, func(tx *federation.Tx) error {
		for i, w := range ws {
			var err error
			if w.GetDelete() {
				err = tx.Delete(w.GetCollection(), w.GetKey())
			} else {
				err = tx.Put(w.GetCollection(), w.GetKey(), w.GetValue())
			}
			if err != nil {
				return fmt.Errorf("write %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, ToConnectError(fmt.Errorf("batch: %w", err))
	}
	return &v1.BatchResponse{Applied: uint32(len(ws))}, nil
}

// Scan returns one page of records.
func (s *Service) Scan(ctx context.Context, req *v1.ScanRequest) (*v1.ScanResponse, error) {
	if err := core.ValidateKey(req.GetCollection(), "", 0); err != nil {
		return nil, ToConnectError(err)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = DefaultScanPage
	}
	if limit > MaxScanPage {
		return nil, invalid("scan: limit %d exceeds %d", limit, MaxScanPage)
	}
	kr := core.KeyRange{Start: req.GetStart(), End: req.GetEnd(), Prefix: req.GetPrefix(),
		IncludeDeleted: req.GetIncludeDeleted(), Limit: limit + 1}
	out := &v1.ScanResponse{}
	err := s.node.Scan(ctx, req.GetCollection(), kr, func(r core.Record) error {
		if len(out.Records) == limit {
			out.NextStart = r.Key
			return nil
		}
		out.Records = append(out.Records, record(r))
		return nil
	})
	if err != nil {
		return nil, ToConnectError(err)
	}
	return out, nil
}

// SetProfileField sets one profile field.
func (s *Service) SetProfileField(ctx context.Context, req *v1.SetProfileFieldRequest) (*v1.SetProfileFieldResponse, error) {
	key := req.GetKey()
	if key == "" {
		key = "me"
	}
	if !json.Valid([]byte(req.GetValueJson())) {
		return nil, invalid("set profile field %q: value_json is not JSON", req.GetField())
	}
	err := s.node.Update(ctx, func(tx *federation.Tx) error {
		old, err := tx.Get(federation.CollectionProfile, key)
		if err != nil && !errors.Is(err, core.ErrNotFound) {
			return err
		}
		ts, err := s.node.Now()
		if err != nil {
			return err
		}
		v, err := conflict.ProfileSet(old, req.GetField(), json.RawMessage(req.GetValueJson()), ts, s.node.DeviceID())
		if err != nil {
			return err
		}
		return tx.Put(federation.CollectionProfile, key, v)
	})
	if err != nil {
		return nil, ToConnectError(err)
	}
	return &v1.SetProfileFieldResponse{}, nil
}

// GetProfile returns a profile's live fields.
func (s *Service) GetProfile(ctx context.Context, req *v1.GetProfileRequest) (*v1.GetProfileResponse, error) {
	key := req.GetKey()
	if key == "" {
		key = "me"
	}
	out := &v1.GetProfileResponse{Fields: map[string]string{}}
	v, err := s.node.Get(ctx, federation.CollectionProfile, key)
	if errors.Is(err, core.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, ToConnectError(err)
	}
	fields, err := conflict.ProfileFields(v)
	if err != nil {
		return nil, ToConnectError(err)
	}
	for name, raw := range fields {
		out.Fields[name] = string(raw)
	}
	return out, nil
}

// AppendMessage appends one message to a conversation.
func (s *Service) AppendMessage(ctx context.Context, req *v1.AppendMessageRequest) (*v1.AppendMessageResponse, error) {
	if req.GetConversation() == "" || req.GetId() == "" {
		return nil, invalid("append message: conversation and id are required")
	}
	err := s.node.Update(ctx, func(tx *federation.Tx) error {
		log := &crdt.Log{}
		old, err := tx.Get(federation.CollectionConversation, req.GetConversation())
		switch {
		case err == nil:
			if log, err = crdt.DecodeLog(old); err != nil {
				return err
			}
		case !errors.Is(err, core.ErrNotFound):
			return err
		}
		if _, dup := log.Get(req.GetId()); dup {
			return fmt.Errorf("%w: message id %q already in the conversation", core.ErrInvalidArgument, req.GetId())
		}
		ts, err := s.node.Now()
		if err != nil {
			return err
		}
		if err := log.Append(crdt.Message{ID: req.GetId(), Time: ts, Device: s.node.DeviceID(), Body: bytes.Clone(req.GetBody())}); err != nil {
			return err
		}
		return tx.Put(federation.CollectionConversation, req.GetConversation(), log.Encode())
	})
	if err != nil {
		return nil, ToConnectError(fmt.Errorf("append message: %w", err))
	}
	return &v1.AppendMessageResponse{}, nil
}

// ListMessages returns a conversation's messages.
func (s *Service) ListMessages(ctx context.Context, req *v1.ListMessagesRequest) (*v1.ListMessagesResponse, error) {
	out := &v1.ListMessagesResponse{}
	v, err := s.node.Get(ctx, federation.CollectionConversation, req.GetConversation())
	if errors.Is(err, core.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, ToConnectError(err)
	}
	log, err := crdt.DecodeLog(v)
	if err != nil {
		return nil, ToConnectError(err)
	}
	for _, m := range log.Messages() {
		out.Messages = append(out.Messages, &v1.Message{Id: m.ID, Time: uint64(m.Time), Device: m.Device.String(), Body: m.Body, Deleted: m.Deleted})
	}
	return out, nil
}

func device(d federation.Device, self federation.DeviceID) *v1.Device {
	out := &v1.Device{Id: d.ID.String(), Name: d.Name, Type: d.Type.String(), PublicKey: d.PublicKey.String(),
		Trust: d.Trust.String(), Policy: d.Policy, Self: d.ID == self}
	if !d.LastSeen.IsZero() {
		out.LastSeen = d.LastSeen.UnixMilli()
	}
	return out
}

// Devices lists the registry.
func (s *Service) Devices(ctx context.Context, _ *v1.DevicesRequest) (*v1.DevicesResponse, error) {
	devs, err := s.node.Devices(ctx)
	if err != nil {
		return nil, ToConnectError(err)
	}
	out := &v1.DevicesResponse{}
	for _, d := range devs {
		out.Devices = append(out.Devices, device(d, s.node.DeviceID()))
	}
	return out, nil
}

// Revoke revokes a device.
func (s *Service) Revoke(ctx context.Context, req *v1.RevokeRequest) (*v1.RevokeResponse, error) {
	id, err := federation.ParseDeviceID(req.GetDeviceId())
	if err != nil {
		return nil, invalid("revoke: device_id: %v", err)
	}
	if id == s.node.DeviceID() {
		return nil, invalid("revoke: a device cannot revoke itself")
	}
	if err := s.node.RevokeDevice(ctx, id); err != nil {
		return nil, ToConnectError(err)
	}
	return &v1.RevokeResponse{}, nil
}

// Conflicts lists the queued conflicts.
func (s *Service) Conflicts(ctx context.Context, _ *v1.ConflictsRequest) (*v1.ConflictsResponse, error) {
	list, err := s.node.Conflicts(ctx)
	if err != nil {
		return nil, ToConnectError(err)
	}
	out := &v1.ConflictsResponse{}
	for _, c := range list {
		out.Conflicts = append(out.Conflicts, &v1.Conflict{Id: c.ID, Collection: c.Collection, Key: c.Key, Ours: record(c.Ours), Theirs: record(c.Theirs)})
	}
	return out, nil
}

// Resolve settles a conflict.
func (s *Service) Resolve(ctx context.Context, req *v1.ResolveRequest) (*v1.ResolveResponse, error) {
	if req.GetId() == "" {
		return nil, invalid("resolve: id is required")
	}
	if req.GetDelete() && len(req.GetValue()) > 0 {
		return nil, invalid("resolve: delete with a value")
	}
	err := s.node.Resolve(ctx, req.GetId(), federation.Resolution{Value: req.GetValue(), Deleted: req.GetDelete()})
	if err != nil {
		return nil, ToConnectError(err)
	}
	return &v1.ResolveResponse{}, nil
}

// Fetch asks for on-demand values through Options.Fetcher.
func (s *Service) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	if err := core.ValidateKey(req.GetCollection(), "", 0); err != nil {
		return nil, ToConnectError(err)
	}
	if s.opts.Fetcher == nil {
		return nil, ToConnectError(fmt.Errorf("fetch: %w: this fednode has no selective sync yet", ErrUnimplemented))
	}
	if err := s.opts.Fetcher.Fetch(ctx, req.GetCollection(), req.GetKeys()...); err != nil {
		return nil, ToConnectError(fmt.Errorf("fetch: %w", err))
	}
	return &v1.FetchResponse{}, nil
}

func peerStats(p federation.PeerStatus) *v1.PeerStats {
	return &v1.PeerStats{Device: p.Device.String(), ChangesSent: p.ChangesSent, ChangesRecv: p.ChangesRecv,
		BytesSent: p.BytesSent, BytesRecv: p.BytesRecv, Conflicts: p.Conflicts, Repairs: p.Repairs,
		RecordsSent: p.RecordsSent, RecordsRecv: p.RecordsRecv}
}

// Stats returns the node's counters.
func (s *Service) Stats(ctx context.Context, _ *v1.StatsRequest) (*v1.StatsResponse, error) {
	st, err := s.node.Stats(ctx)
	if err != nil {
		return nil, ToConnectError(err)
	}
	out := &v1.StatsResponse{Device: st.Device.String(), Records: st.Store.Records, Tombstones: st.Store.Tombstones,
		Changes: st.Store.Changes, VersionVector: map[string]uint64{}, Subscribers: int64(st.Subscribers),
		EventsDropped: st.EventsDropped, ClockDrift: st.ClockDrift, RepairsUnsettled: st.RepairsUnsettled,
		AuditTampered: st.AuditTampered, Roots: map[string]string{}}
	for d, seq := range st.VersionVector {
		out.VersionVector[d.String()] = seq
	}
	for _, p := range s.node.Peers() {
		out.Peers = append(out.Peers, peerStats(p))
	}
	for c, d := range s.node.Roots() {
		out.Roots[c] = hex.EncodeToString(d[:])
	}
	return out, nil
}

// Health reports who the node is.
func (s *Service) Health(ctx context.Context, _ *v1.HealthRequest) (*v1.HealthResponse, error) {
	out := &v1.HealthResponse{Device: s.node.DeviceID().String(), Addr: s.node.Addr(), Peers: uint32(len(s.node.Peers()))}
	devs, err := s.node.Devices(ctx)
	if err != nil {
		return nil, ToConnectError(err)
	}
	for _, d := range devs {
		if d.ID == s.node.DeviceID() {
			out.Name = d.Name
		}
	}
	out.Serving = true
	return out, nil
}

// chunkWriter sends what it is given as BackupChunks.
type chunkWriter struct{ send func(*v1.BackupChunk) error }

func (w chunkWriter) Write(p []byte) (int, error) {
	for n := 0; n < len(p); {
		end := min(n+backupChunk, len(p))
		if err := w.send(&v1.BackupChunk{Data: bytes.Clone(p[n:end])}); err != nil {
			return n, err
		}
		n = end
	}
	return len(p), nil
}

// Backup streams a copy of the store.
func (s *Service) Backup(ctx context.Context, _ *v1.BackupRequest, send func(*v1.BackupChunk) error) error {
	return ToConnectError(s.node.Backup(ctx, chunkWriter{send}))
}

// newRequestID returns a fresh pairing request id.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ask registers a pairing request and waits for Approve (or ctx).
func (s *Service) ask(ctx context.Context, id string, show func()) bool {
	ch := make(chan bool, 1)
	s.mu.Lock()
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	show()
	select {
	case ok := <-ch:
		return ok
	case <-ctx.Done():
		return false
	}
}

// Approve answers a pending pairing request.
func (s *Service) Approve(_ context.Context, req *v1.ApproveRequest) (*v1.ApproveResponse, error) {
	s.mu.Lock()
	ch, ok := s.pending[req.GetRequestId()]
	delete(s.pending, req.GetRequestId())
	s.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("approve: no pairing request %q waiting", req.GetRequestId()))
	}
	ch <- req.GetAccept()
	return &v1.ApproveResponse{}, nil
}

func pairRequest(id string, r federation.PairRequest, self federation.DeviceID) *v1.PairRequest {
	p := r.Peer
	return &v1.PairRequest{RequestId: id, Sas: r.SAS, Peer: &v1.Device{Id: p.ID.String(), Name: p.Name,
		Type: p.Type.String(), PublicKey: p.Key.String(), Self: p.ID == self}}
}

// Invite opens an invitation and streams its progress.
func (s *Service) Invite(ctx context.Context, req *v1.InviteRequest, send func(*v1.InviteUpdate) error) error {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	updates := make(chan *v1.InviteUpdate, 4)
	approved := make(chan federation.DeviceID, 1)
	approve := func(actx context.Context, r federation.PairRequest) (bool, error) {
		id := newRequestID()
		pr := pairRequest(id, r, s.node.DeviceID())
		wctx, cancel := context.WithCancel(actx)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel) // the stream's end refuses
		defer stop()
		ok := s.ask(wctx, id, func() {
			select {
			case updates <- &v1.InviteUpdate{Update: &v1.InviteUpdate_Request{Request: pr}}:
			case <-wctx.Done():
			}
		})
		if !ok {
			select {
			case updates <- &v1.InviteUpdate{Update: &v1.InviteUpdate_Refused{Refused: pr}}:
			case <-ctx.Done():
			}
			return false, nil
		}
		select {
		case approved <- r.Peer.ID:
		default:
		}
		return true, nil
	}
	inv, err := s.node.Invite(ctx, federation.InviteOptions{TTL: ttl, Approve: approve})
	if err != nil {
		return ToConnectError(err)
	}
	if err := send(&v1.InviteUpdate{Update: &v1.InviteUpdate_Invitation{Invitation: &v1.Invitation{
		Code: inv.Code, Qr: inv.QR, Expires: inv.Expires.Unix()}}}); err != nil {
		return err
	}
	expire := time.NewTimer(ttl)
	defer expire.Stop()
	for {
		select {
		case u := <-updates:
			if err := send(u); err != nil {
				return err
			}
		case id := <-approved:
			d, err := s.awaitTrusted(ctx, id)
			if err != nil {
				return ToConnectError(fmt.Errorf("invite: approved device did not join: %w", err))
			}
			return send(&v1.InviteUpdate{Update: &v1.InviteUpdate_Paired{Paired: d}})
		case <-expire.C:
			return connect.NewError(connect.CodeDeadlineExceeded, errors.New("invite: the invitation expired"))
		case <-ctx.Done():
			return ToConnectError(ctx.Err())
		}
	}
}

// awaitTrusted waits until device id is trusted in the registry.
func (s *Service) awaitTrusted(ctx context.Context, id federation.DeviceID) (*v1.Device, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.PairWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		devs, err := s.node.Devices(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if d.ID == id && d.Trust == federation.TrustTrusted {
				return device(d, s.node.DeviceID()), nil
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Join redeems an invitation and streams its progress.
func (s *Service) Join(ctx context.Context, req *v1.JoinRequest, send func(*v1.JoinUpdate) error) error {
	if req.GetInvitation() == "" {
		return invalid("join: invitation is required")
	}
	updates := make(chan *v1.JoinUpdate, 4)
	self := s.node.DeviceID()
	opts := federation.JoinOptions{}
	if req.GetConfirm() {
		opts.Confirm = func(cctx context.Context, r federation.PairRequest) (bool, error) {
			id := newRequestID()
			return s.ask(cctx, id, func() {
				select {
				case updates <- &v1.JoinUpdate{Update: &v1.JoinUpdate_Request{Request: pairRequest(id, r, self)}}:
				case <-cctx.Done():
				}
			}), nil
		}
	} else {
		opts.Show = func(r federation.PairRequest) {
			select {
			case updates <- &v1.JoinUpdate{Update: &v1.JoinUpdate_Request{Request: pairRequest("", r, self)}}:
			case <-ctx.Done():
			}
		}
	}
	type result struct {
		r   federation.PairRequest
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.node.Join(ctx, req.GetInvitation(), opts)
		done <- result{r, err}
	}()
	for {
		select {
		case u := <-updates:
			if err := send(u); err != nil {
				return err
			}
		case res := <-done:
			for len(updates) > 0 {
				if err := send(<-updates); err != nil {
					return err
				}
			}
			if res.err != nil {
				return ToConnectError(res.err)
			}
			d, err := s.awaitTrusted(ctx, res.r.Peer.ID)
			if err != nil {
				return ToConnectError(fmt.Errorf("join: %w", err))
			}
			return send(&v1.JoinUpdate{Update: &v1.JoinUpdate_Joined{Joined: d}})
		}
	}
}
