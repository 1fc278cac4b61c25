package daemon

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/api/federation/v1/federationv1connect"
)

// Handler returns the Connect front door of s: gRPC, gRPC-Web and the
// Connect protocol (binary or JSON) from one handler, mounted at the
// returned path. Requests decode strictly (Decode) and are bounded by
// MaxRequestBytes. A non-empty token requires "Authorization: Bearer
// <token>" on every request (CodeUnauthenticated otherwise).
func Handler(s *Service, token string) (string, http.Handler) {
	codecs := []connect.HandlerOption{
		connect.WithCodec(strictCodec{name: "proto"}),
		connect.WithCodec(strictCodec{name: "json", json: true}),
		connect.WithCodec(strictCodec{name: "json; charset=utf-8", json: true}),
		connect.WithReadMaxBytes(MaxRequestBytes),
	}
	path, h := federationv1connect.NewFederationServiceHandler(connectAdapter{s}, codecs...)
	if token != "" {
		h = bearer(token, h)
	}
	return path, h
}

// ErrBadToken reports a missing or wrong bearer token.
var ErrBadToken = errors.New("missing or wrong bearer token")

// bearer refuses requests without the token.
func bearer(token string, next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(strings.TrimSpace(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			_ = ew.Write(w, r, connect.NewError(connect.CodeUnauthenticated, ErrBadToken))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// connectAdapter serves the generated Connect interface with Service.
type connectAdapter struct{ s *Service }

var _ federationv1connect.FederationServiceHandler = connectAdapter{}

func unary[Req, Res any](ctx context.Context, req *connect.Request[Req], f func(context.Context, *Req) (*Res, error)) (*connect.Response[Res], error) {
	res, err := f(ctx, req.Msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

func (a connectAdapter) Put(ctx context.Context, r *connect.Request[v1.PutRequest]) (*connect.Response[v1.PutResponse], error) {
	return unary(ctx, r, a.s.Put)
}
func (a connectAdapter) Get(ctx context.Context, r *connect.Request[v1.GetRequest]) (*connect.Response[v1.GetResponse], error) {
	return unary(ctx, r, a.s.Get)
}
func (a connectAdapter) Delete(ctx context.Context, r *connect.Request[v1.DeleteRequest]) (*connect.Response[v1.DeleteResponse], error) {
	return unary(ctx, r, a.s.Delete)
}
func (a connectAdapter) Batch(ctx context.Context, r *connect.Request[v1.BatchRequest]) (*connect.Response[v1.BatchResponse], error) {
	return unary(ctx, r, a.s.Batch)
}
func (a connectAdapter) Scan(ctx context.Context, r *connect.Request[v1.ScanRequest]) (*connect.Response[v1.ScanResponse], error) {
	return unary(ctx, r, a.s.Scan)
}
func (a connectAdapter) SetProfileField(ctx context.Context, r *connect.Request[v1.SetProfileFieldRequest]) (*connect.Response[v1.SetProfileFieldResponse], error) {
	return unary(ctx, r, a.s.SetProfileField)
}
func (a connectAdapter) GetProfile(ctx context.Context, r *connect.Request[v1.GetProfileRequest]) (*connect.Response[v1.GetProfileResponse], error) {
	return unary(ctx, r, a.s.GetProfile)
}
func (a connectAdapter) AppendMessage(ctx context.Context, r *connect.Request[v1.AppendMessageRequest]) (*connect.Response[v1.AppendMessageResponse], error) {
	return unary(ctx, r, a.s.AppendMessage)
}
func (a connectAdapter) ListMessages(ctx context.Context, r *connect.Request[v1.ListMessagesRequest]) (*connect.Response[v1.ListMessagesResponse], error) {
	return unary(ctx, r, a.s.ListMessages)
}
func (a connectAdapter) Approve(ctx context.Context, r *connect.Request[v1.ApproveRequest]) (*connect.Response[v1.ApproveResponse], error) {
	return unary(ctx, r, a.s.Approve)
}
func (a connectAdapter) Devices(ctx context.Context, r *connect.Request[v1.DevicesRequest]) (*connect.Response[v1.DevicesResponse], error) {
	return unary(ctx, r, a.s.Devices)
}
func (a connectAdapter) Revoke(ctx context.Context, r *connect.Request[v1.RevokeRequest]) (*connect.Response[v1.RevokeResponse], error) {
	return unary(ctx, r, a.s.Revoke)
}
func (a connectAdapter) Conflicts(ctx context.Context, r *connect.Request[v1.ConflictsRequest]) (*connect.Response[v1.ConflictsResponse], error) {
	return unary(ctx, r, a.s.Conflicts)
}
func (a connectAdapter) Resolve(ctx context.Context, r *connect.Request[v1.ResolveRequest]) (*connect.Response[v1.ResolveResponse], error) {
	return unary(ctx, r, a.s.Resolve)
}
func (a connectAdapter) Fetch(ctx context.Context, r *connect.Request[v1.FetchRequest]) (*connect.Response[v1.FetchResponse], error) {
	return unary(ctx, r, a.s.Fetch)
}
func (a connectAdapter) Stats(ctx context.Context, r *connect.Request[v1.StatsRequest]) (*connect.Response[v1.StatsResponse], error) {
	return unary(ctx, r, a.s.Stats)
}
func (a connectAdapter) Health(ctx context.Context, r *connect.Request[v1.HealthRequest]) (*connect.Response[v1.HealthResponse], error) {
	return unary(ctx, r, a.s.Health)
}
func (a connectAdapter) Subscribe(ctx context.Context, r *connect.Request[v1.SubscribeRequest], st *connect.ServerStream[v1.Event]) error {
	return a.s.Subscribe(ctx, r.Msg, st.Send) // sends the headers once subscribed
}
func (a connectAdapter) Invite(ctx context.Context, r *connect.Request[v1.InviteRequest], st *connect.ServerStream[v1.InviteUpdate]) error {
	if err := st.Send(nil); err != nil { // headers now: a client waits for them
		return err
	}
	return a.s.Invite(ctx, r.Msg, st.Send)
}
func (a connectAdapter) Join(ctx context.Context, r *connect.Request[v1.JoinRequest], st *connect.ServerStream[v1.JoinUpdate]) error {
	if err := st.Send(nil); err != nil { // headers now: a client waits for them
		return err
	}
	return a.s.Join(ctx, r.Msg, st.Send)
}
func (a connectAdapter) Backup(ctx context.Context, r *connect.Request[v1.BackupRequest], st *connect.ServerStream[v1.BackupChunk]) error {
	if err := st.Send(nil); err != nil { // headers now: a client waits for them
		return err
	}
	return a.s.Backup(ctx, r.Msg, st.Send)
}
