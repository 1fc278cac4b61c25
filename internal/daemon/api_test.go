package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/api/federation/v1/federationv1connect"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/internal/daemon"
)

func req[T any](m *T) *connect.Request[T] { return connect.NewRequest(m) }

// TestAPIDataMethods drives Put, Get, Delete, Batch, Scan, the profile and
// conversation methods, Stats, Health, Backup and Fetch on a real daemon
// over its Unix socket, its TCP port and gRPC.
func TestAPIDataMethods(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, "solo", daemon.Config{})
	c := d.sock

	_, err := c.Put(ctx, req(&v1.PutRequest{Collection: "notes", Key: "a", Value: []byte("one")}))
	require.NoError(t, err)
	got, err := d.tcp.Get(ctx, req(&v1.GetRequest{Collection: "notes", Key: "a"}))
	require.NoError(t, err, "the TCP door with the token reads what the socket wrote")
	require.Equal(t, "one", string(got.Msg.Record.Value))
	require.Equal(t, d.info.Device, got.Msg.Record.Origin)
	require.NotZero(t, got.Msg.Record.Timestamp)

	_, err = c.Delete(ctx, req(&v1.DeleteRequest{Collection: "notes", Key: "a"}))
	require.NoError(t, err)
	_, err = c.Get(ctx, req(&v1.GetRequest{Collection: "notes", Key: "a"}))
	require.Equal(t, connect.CodeNotFound, code(err), "%v", err)
	tomb, err := c.Get(ctx, req(&v1.GetRequest{Collection: "notes", Key: "a", IncludeDeleted: true}))
	require.NoError(t, err)
	require.True(t, tomb.Msg.Record.Deleted)

	// Batch is atomic: a bad write leaves nothing behind.
	_, err = c.Batch(ctx, req(&v1.BatchRequest{Writes: []*v1.Write{
		{Collection: "notes", Key: "b1", Value: []byte("x")},
		{Collection: "", Key: "bad", Value: []byte("y")},
	}}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "%v", err)
	_, err = c.Get(ctx, req(&v1.GetRequest{Collection: "notes", Key: "b1"}))
	require.Equal(t, connect.CodeNotFound, code(err), "the failed batch wrote nothing")
	var writes []*v1.Write
	for i := range 25 {
		writes = append(writes, &v1.Write{Collection: "items", Key: string(rune('a'+i)) + "-key", Value: []byte{byte(i)}})
	}
	writes = append(writes, &v1.Write{Collection: "notes", Key: "a", Delete: true})
	br, err := c.Batch(ctx, req(&v1.BatchRequest{Writes: writes}))
	require.NoError(t, err)
	require.EqualValues(t, 26, br.Msg.Applied)

	// Scan pages through the 25 items.
	var keys []string
	start := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		sr, err := c.Scan(ctx, req(&v1.ScanRequest{Collection: "items", Start: start, Limit: 10}))
		require.NoError(t, err)
		for _, r := range sr.Msg.Records {
			keys = append(keys, r.Key)
		}
		if sr.Msg.NextStart == "" {
			break
		}
		start = sr.Msg.NextStart
	}
	require.Len(t, keys, 25)
	require.Equal(t, "a-key", keys[0])
	require.Equal(t, "y-key", keys[24])
	sr, err := c.Scan(ctx, req(&v1.ScanRequest{Collection: "items", Prefix: "c"}))
	require.NoError(t, err)
	require.Len(t, sr.Msg.Records, 1)

	// Profile fields and conversation messages.
	_, err = c.SetProfileField(ctx, req(&v1.SetProfileFieldRequest{Field: "city", ValueJson: `"Lisbon"`}))
	require.NoError(t, err)
	_, err = c.SetProfileField(ctx, req(&v1.SetProfileFieldRequest{Field: "age", ValueJson: `42`}))
	require.NoError(t, err)
	prof, err := c.GetProfile(ctx, req(&v1.GetProfileRequest{}))
	require.NoError(t, err)
	require.Equal(t, map[string]string{"city": `"Lisbon"`, "age": "42"}, prof.Msg.Fields)
	_, err = c.AppendMessage(ctx, req(&v1.AppendMessageRequest{Conversation: "chat-1", Id: "m1", Body: []byte("hello")}))
	require.NoError(t, err)
	_, err = c.AppendMessage(ctx, req(&v1.AppendMessageRequest{Conversation: "chat-1", Id: "m2", Body: []byte("again")}))
	require.NoError(t, err)
	_, err = c.AppendMessage(ctx, req(&v1.AppendMessageRequest{Conversation: "chat-1", Id: "m2", Body: []byte("dup")}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "a duplicate message id: %v", err)
	msgs, err := c.ListMessages(ctx, req(&v1.ListMessagesRequest{Conversation: "chat-1"}))
	require.NoError(t, err)
	require.Len(t, msgs.Msg.Messages, 2)
	require.Equal(t, "hello", string(msgs.Msg.Messages[0].Body))
	require.Equal(t, "again", string(msgs.Msg.Messages[1].Body))

	st, err := c.Stats(ctx, req(&v1.StatsRequest{}))
	require.NoError(t, err)
	require.Equal(t, d.info.Device, st.Msg.Device)
	require.EqualValues(t, 27, st.Msg.Records, "25 items, the profile, the conversation")
	require.NotEmpty(t, st.Msg.Roots["items"])
	require.NotZero(t, st.Msg.VersionVector[d.info.Device])

	// Health over gRPC (HTTP/2 without TLS) and gRPC-Web, from the same handler.
	grpc := federationv1connect.NewFederationServiceClient(h2cClient(d.info.Socket), "http://fednode", connect.WithGRPC())
	h, err := grpc.Health(ctx, req(&v1.HealthRequest{}))
	require.NoError(t, err)
	require.True(t, h.Msg.Serving)
	require.Equal(t, d.info.Device, h.Msg.Device)
	require.Equal(t, d.info.Addr, h.Msg.Addr)
	web := federationv1connect.NewFederationServiceClient(unixClient(d.info.Socket), "http://fednode", connect.WithGRPCWeb())
	_, err = web.Health(ctx, req(&v1.HealthRequest{}))
	require.NoError(t, err)

	// Backup streams a libSQL file.
	bs, err := c.Backup(ctx, req(&v1.BackupRequest{}))
	require.NoError(t, err)
	var backup bytes.Buffer
	for bs.Receive() {
		backup.Write(bs.Msg().Data)
	}
	require.NoError(t, bs.Err())
	require.Greater(t, backup.Len(), 4096)
	require.True(t, bytes.HasPrefix(backup.Bytes(), []byte("SQLite format 3\x00")), "a self-contained database file")

	// Fetch goes to Node.Fetch: a key this device does not hold as a
	// stub is ignored; a missing collection is bad input.
	_, err = c.Fetch(ctx, req(&v1.FetchRequest{Collection: "media", Keys: []string{"x"}}))
	require.NoError(t, err)
	_, err = c.Fetch(ctx, req(&v1.FetchRequest{Keys: []string{"x"}}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "%v", err)
}

// rawCall posts body to method on the TCP door with the given headers and
// returns the status and the body.
func rawCall(t *testing.T, d *daemonT, method, contentType string, body []byte, token string) (int, string) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://"+d.info.TCP+"/"+federationv1connect.FederationServiceName+"/"+method, bytes.NewReader(body))
	require.NoError(t, err)
	r.Header.Set("Content-Type", contentType)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// TestAPIBadInput checks that bad requests get a clear error with the
// right Connect code: unknown fields (JSON and binary), oversized values
// and requests, a wrong or missing token, malformed ids, unknown pairing
// requests and conflicts.
func TestAPIBadInput(t *testing.T) {
	ctx := context.Background()
	d := startDaemon(t, "strict", daemon.Config{})
	c := d.sock

	// Unknown fields, JSON: a typo is refused, not dropped.
	status, body := rawCall(t, d, "Put", "application/json", []byte(`{"collection":"notes","key":"k","valu":"aGk="}`), testToken)
	require.Equal(t, http.StatusBadRequest, status, body)
	require.Contains(t, body, `"code":"invalid_argument"`)
	require.Contains(t, body, `unknown field \"valu\"`)
	// Unknown fields, binary: field 99 appended to a valid PutRequest.
	pb, err := proto.Marshal(&v1.PutRequest{Collection: "notes", Key: "k", Value: []byte("v")})
	require.NoError(t, err)
	pb = protowire.AppendTag(pb, 99, protowire.BytesType)
	pb = protowire.AppendBytes(pb, []byte("surprise"))
	status, body = rawCall(t, d, "Put", "application/proto", pb, testToken)
	require.Equal(t, http.StatusBadRequest, status, body)
	require.Contains(t, body, "unknown field")
	// ... also nested inside a message of a list.
	bw, err := proto.Marshal(&v1.Write{Collection: "notes", Key: "k"})
	require.NoError(t, err)
	bw = protowire.AppendTag(bw, 42, protowire.VarintType)
	bw = protowire.AppendVarint(bw, 7)
	var batch []byte
	batch = protowire.AppendTag(batch, 1, protowire.BytesType)
	batch = protowire.AppendBytes(batch, bw)
	status, body = rawCall(t, d, "Batch", "application/proto", batch, testToken)
	require.Equal(t, http.StatusBadRequest, status, body)
	require.Contains(t, body, "unknown field in devicemesh.federation.v1.Write")
	_, err = c.Get(ctx, req(&v1.GetRequest{Collection: "notes", Key: "k"}))
	require.Equal(t, connect.CodeNotFound, code(err), "nothing was written by the refused requests")

	// A wrong or missing token on TCP.
	status, body = rawCall(t, d, "Health", "application/json", []byte(`{}`), "wrong")
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.Contains(t, body, `"code":"unauthenticated"`)
	status, _ = rawCall(t, d, "Health", "application/json", []byte(`{}`), "")
	require.Equal(t, http.StatusUnauthorized, status)
	wrong := federationv1connect.NewFederationServiceClient(tokenClient("wrong"), "http://"+d.info.TCP)
	_, err = wrong.Put(ctx, req(&v1.PutRequest{Collection: "notes", Key: "k", Value: []byte("v")}))
	require.Equal(t, connect.CodeUnauthenticated, code(err), "%v", err)
	wrongGRPC := federationv1connect.NewFederationServiceClient(tokenClient("wrong"), "http://"+d.info.TCP, connect.WithGRPCWeb())
	_, err = wrongGRPC.Health(ctx, req(&v1.HealthRequest{}))
	require.Equal(t, connect.CodeUnauthenticated, code(err), "%v", err)

	// Oversized values: over the node's limit, and over the request limit.
	_, err = c.Put(ctx, req(&v1.PutRequest{Collection: "notes", Key: "big", Value: make([]byte, core.MaxValueLen+1)}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "%v", err)
	require.Contains(t, err.Error(), "exceeds")
	_, err = c.Batch(ctx, req(&v1.BatchRequest{Writes: []*v1.Write{
		{Collection: "notes", Key: "ok", Value: []byte("small")},
		{Collection: "notes", Key: "big", Value: make([]byte, core.MaxValueLen+1)},
	}}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "%v", err)
	_, err = c.Put(ctx, req(&v1.PutRequest{Collection: "notes", Key: "huge", Value: make([]byte, daemon.MaxRequestBytes+1)}))
	require.Equal(t, connect.CodeResourceExhausted, code(err), "%v", err)
	_, err = c.Put(ctx, req(&v1.PutRequest{Collection: "notes", Key: strings.Repeat("k", core.MaxKeyLen+1), Value: []byte("v")}))
	require.Equal(t, connect.CodeInvalidArgument, code(err), "%v", err)

	// Malformed arguments.
	for name, call := range map[string]func() error{
		"put without collection": func() error {
			_, err := c.Put(ctx, req(&v1.PutRequest{Key: "k", Value: []byte("v")}))
			return err
		},
		"empty batch": func() error { _, err := c.Batch(ctx, req(&v1.BatchRequest{})); return err },
		"delete with a value": func() error {
			_, err := c.Batch(ctx, req(&v1.BatchRequest{Writes: []*v1.Write{{Collection: "n", Key: "k", Value: []byte("v"), Delete: true}}}))
			return err
		},
		"scan page too big": func() error {
			_, err := c.Scan(ctx, req(&v1.ScanRequest{Collection: "n", Limit: daemon.MaxScanPage + 1}))
			return err
		},
		"profile value not JSON": func() error {
			_, err := c.SetProfileField(ctx, req(&v1.SetProfileFieldRequest{Field: "city", ValueJson: "Lisbon"}))
			return err
		},
		"message without id": func() error {
			_, err := c.AppendMessage(ctx, req(&v1.AppendMessageRequest{Conversation: "c"}))
			return err
		},
		"revoke a malformed id": func() error {
			_, err := c.Revoke(ctx, req(&v1.RevokeRequest{DeviceId: "not-an-id"}))
			return err
		},
		"revoke itself": func() error {
			_, err := c.Revoke(ctx, req(&v1.RevokeRequest{DeviceId: d.info.Device}))
			return err
		},
		"join without invitation": func() error {
			s, err := c.Join(ctx, req(&v1.JoinRequest{}))
			require.NoError(t, err)
			for s.Receive() {
			}
			return s.Err()
		},
		"join a garbled invitation": func() error {
			s, err := c.Join(ctx, req(&v1.JoinRequest{Invitation: "garbage"}))
			require.NoError(t, err)
			for s.Receive() {
			}
			return s.Err()
		},
		"subscribe to an empty collection name": func() error {
			s, err := c.Subscribe(ctx, req(&v1.SubscribeRequest{Collections: []string{""}}))
			require.NoError(t, err)
			for s.Receive() {
			}
			return s.Err()
		},
	} {
		require.Equal(t, connect.CodeInvalidArgument, code(call()), name)
	}
	_, err = c.Approve(ctx, req(&v1.ApproveRequest{RequestId: "nope", Accept: true}))
	require.Equal(t, connect.CodeNotFound, code(err), "%v", err)
	_, err = c.Resolve(ctx, req(&v1.ResolveRequest{Id: "nope", Value: []byte("v")}))
	require.Equal(t, connect.CodeNotFound, code(err), "%v", err)

	// Everything above failed cleanly: the daemon still serves.
	h, err := d.tcp.Health(ctx, req(&v1.HealthRequest{}))
	require.NoError(t, err)
	require.True(t, h.Msg.Serving)
}

// recvUntil reads a stream until pred holds for a message.
func recvUntil[T any](t *testing.T, s *connect.ServerStreamForClient[T], what string, pred func(*T) bool) *T {
	t.Helper()
	for s.Receive() {
		if pred(s.Msg()) {
			return s.Msg()
		}
	}
	t.Fatalf("stream ended before %s: %v", what, s.Err())
	return nil
}

// TestAPIPairingConflictsRevoke pairs two daemons through Invite, Join and
// Approve, watches changes and a manual conflict arrive through Subscribe,
// settles it with Conflicts and Resolve, lists Devices and Revokes.
func TestAPIPairingConflictsRevoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	manual := map[string]string{"plans": "manual"}
	a := startDaemon(t, "laptop", daemon.Config{Collections: manual})
	b := startDaemon(t, "phone", daemon.Config{Collections: manual})

	// Concurrent versions of one record, written before pairing.
	_, err := a.sock.Put(ctx, req(&v1.PutRequest{Collection: "plans", Key: "holiday", Value: []byte("mountains")}))
	require.NoError(t, err)
	_, err = b.sock.Put(ctx, req(&v1.PutRequest{Collection: "plans", Key: "holiday", Value: []byte("seaside")}))
	require.NoError(t, err)
	_, err = a.sock.SetProfileField(ctx, req(&v1.SetProfileFieldRequest{Field: "name", ValueJson: `"Ada"`}))
	require.NoError(t, err)

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	events, err := b.sock.Subscribe(sctx, req(&v1.SubscribeRequest{}))
	require.NoError(t, err)

	inv, err := a.sock.Invite(ctx, req(&v1.InviteRequest{TtlSeconds: 60}))
	require.NoError(t, err)
	first := recvUntil(t, inv, "invitation", func(u *v1.InviteUpdate) bool { return u.GetInvitation() != nil })
	join, err := b.tcp.Join(ctx, req(&v1.JoinRequest{Invitation: first.GetInvitation().Qr, Confirm: true}))
	require.NoError(t, err)
	onJoiner := recvUntil(t, join, "joiner's SAS", func(u *v1.JoinUpdate) bool { return u.GetRequest() != nil }).GetRequest()
	onInviter := recvUntil(t, inv, "inviter's request", func(u *v1.InviteUpdate) bool { return u.GetRequest() != nil }).GetRequest()
	require.NotEmpty(t, onJoiner.Sas)
	require.Equal(t, onInviter.Sas, onJoiner.Sas, "both devices show the same SAS")
	require.Equal(t, a.info.Device, onJoiner.Peer.Id)
	require.Equal(t, b.info.Device, onInviter.Peer.Id)
	require.Equal(t, "phone", onInviter.Peer.Name)
	_, err = b.sock.Approve(ctx, req(&v1.ApproveRequest{RequestId: onJoiner.RequestId, Accept: true}))
	require.NoError(t, err)
	_, err = a.sock.Approve(ctx, req(&v1.ApproveRequest{RequestId: onInviter.RequestId, Accept: true}))
	require.NoError(t, err)
	paired := recvUntil(t, inv, "paired", func(u *v1.InviteUpdate) bool { return u.GetPaired() != nil }).GetPaired()
	require.Equal(t, b.info.Device, paired.Id)
	require.Equal(t, "trusted", paired.Trust)
	joined := recvUntil(t, join, "joined", func(u *v1.JoinUpdate) bool { return u.GetJoined() != nil }).GetJoined()
	require.Equal(t, a.info.Device, joined.Id)

	// The phone sees the session, the laptop's profile and the conflict.
	seen := map[v1.EventKind]*v1.Event{}
	for len(seen) < 3 {
		e := recvUntil(t, events, "events", func(e *v1.Event) bool {
			return e.Kind == v1.EventKind_EVENT_KIND_CONNECTED ||
				(e.Kind == v1.EventKind_EVENT_KIND_CHANGE && e.Collection == "profile") ||
				e.Kind == v1.EventKind_EVENT_KIND_CONFLICT
		})
		seen[e.Kind] = e
	}
	require.Equal(t, a.info.Device, seen[v1.EventKind_EVENT_KIND_CONNECTED].Origin)
	require.Equal(t, "plans", seen[v1.EventKind_EVENT_KIND_CONFLICT].Collection)
	require.False(t, seen[v1.EventKind_EVENT_KIND_CHANGE].Local)
	prof, err := b.sock.GetProfile(ctx, req(&v1.GetProfileRequest{}))
	require.NoError(t, err)
	require.Equal(t, `"Ada"`, prof.Msg.Fields["name"])

	// Settle the conflict on the phone; the laptop settles with it.
	cs, err := b.sock.Conflicts(ctx, req(&v1.ConflictsRequest{}))
	require.NoError(t, err)
	require.Len(t, cs.Msg.Conflicts, 1)
	cf := cs.Msg.Conflicts[0]
	require.Equal(t, "holiday", cf.Key)
	require.ElementsMatch(t, []string{"mountains", "seaside"}, []string{string(cf.Ours.Value), string(cf.Theirs.Value)})
	_, err = b.sock.Resolve(ctx, req(&v1.ResolveRequest{Id: cf.Id, Value: []byte("mountains, then seaside")}))
	require.NoError(t, err)
	recvUntil(t, events, "resolved", func(e *v1.Event) bool { return e.Kind == v1.EventKind_EVENT_KIND_RESOLVED && e.ConflictId == cf.Id })
	require.Eventually(t, func() bool {
		g, err := a.sock.Get(ctx, req(&v1.GetRequest{Collection: "plans", Key: "holiday"}))
		if err != nil || string(g.Msg.Record.Value) != "mountains, then seaside" {
			return false
		}
		ac, err := a.sock.Conflicts(ctx, req(&v1.ConflictsRequest{}))
		return err == nil && len(ac.Msg.Conflicts) == 0
	}, 20*time.Second, 20*time.Millisecond, "the laptop converges on the resolution")

	// Devices, then Revoke: the laptop cuts the phone off.
	devs, err := a.sock.Devices(ctx, req(&v1.DevicesRequest{}))
	require.NoError(t, err)
	trust := map[string]string{}
	for _, dv := range devs.Msg.Devices {
		trust[dv.Id] = dv.Trust
		if dv.Id == a.info.Device {
			require.True(t, dv.Self)
		}
	}
	require.Equal(t, map[string]string{a.info.Device: "owner", b.info.Device: "trusted"}, trust)
	_, err = a.sock.Revoke(ctx, req(&v1.RevokeRequest{DeviceId: b.info.Device}))
	require.NoError(t, err)
	devs, err = a.sock.Devices(ctx, req(&v1.DevicesRequest{}))
	require.NoError(t, err)
	for _, dv := range devs.Msg.Devices {
		if dv.Id == b.info.Device {
			require.Equal(t, "revoked", dv.Trust)
		}
	}
	recvUntil(t, events, "disconnect", func(e *v1.Event) bool {
		return e.Kind == v1.EventKind_EVENT_KIND_DISCONNECTED && e.Origin == a.info.Device
	})
	st, err := a.sock.Stats(ctx, req(&v1.StatsRequest{}))
	require.NoError(t, err)
	require.Empty(t, st.Msg.Peers)
}

// TestAPIStopEndsStreams: stopping the daemon (what SIGTERM does) ends
// open Subscribe streams with CodeUnavailable instead of hanging.
func TestAPIStopEndsStreams(t *testing.T) {
	d := startDaemon(t, "stopping", daemon.Config{})
	s, err := d.sock.Subscribe(context.Background(), req(&v1.SubscribeRequest{}))
	require.NoError(t, err)
	_, err = d.sock.Put(context.Background(), req(&v1.PutRequest{Collection: "n", Key: "k", Value: []byte("v")}))
	require.NoError(t, err)
	recvUntil(t, s, "change", func(e *v1.Event) bool { return e.Kind == v1.EventKind_EVENT_KIND_CHANGE })
	stopped := make(chan error, 1)
	go func() { stopped <- d.stop() }()
	for s.Receive() {
	}
	require.Equal(t, connect.CodeUnavailable, code(s.Err()), "%v", s.Err())
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not stop")
	}
	_, err = d.sock.Health(context.Background(), req(&v1.HealthRequest{}))
	require.Error(t, err)
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

// fetchRecorder is a Fetcher that records its calls.
type fetchRecorder struct {
	collection string
	keys       []string
	err        error
}

func (f *fetchRecorder) Fetch(_ context.Context, collection string, keys ...string) error {
	f.collection, f.keys = collection, keys
	return f.err
}

// TestFetchThroughFetcher: with a Fetcher (selective sync's Node.Fetch),
// Fetch reaches it and its errors keep their codes.
func TestFetchThroughFetcher(t *testing.T) {
	rec := &fetchRecorder{}
	svc := daemon.New(nodeForService(t), daemon.Options{Fetcher: rec})
	defer svc.Close()
	_, err := svc.Fetch(context.Background(), &v1.FetchRequest{Collection: "media", Keys: []string{"a", "b"}})
	require.NoError(t, err)
	require.Equal(t, "media", rec.collection)
	require.Equal(t, []string{"a", "b"}, rec.keys)
	rec.err = fmt.Errorf("fetch: %w", core.ErrNotFound)
	_, err = svc.Fetch(context.Background(), &v1.FetchRequest{Collection: "media", Keys: []string{"gone"}})
	require.Equal(t, connect.CodeNotFound, code(err))
	_, err = svc.Fetch(context.Background(), &v1.FetchRequest{Keys: []string{"a"}})
	require.Equal(t, connect.CodeInvalidArgument, code(err), "a collection is required")
}
