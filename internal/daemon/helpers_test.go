package daemon_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/api/federation/v1/federationv1connect"
	"github.com/devicemesh/federation/internal/daemon"
)

const testToken = "s3cret-token"

// daemonT is one daemon started by daemon.Run in this process, serving on
// a real Unix socket and a real loopback TCP port.
type daemonT struct {
	info daemon.Info
	// sock talks Connect over the Unix socket; tcp over loopback TCP with
	// the token.
	sock, tcp federationv1connect.FederationServiceClient
	stop      func() error
}

func unixClient(path string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &http.Client{Transport: tr}
}

// h2cClient speaks HTTP/2 without TLS (for gRPC) over the Unix socket.
func h2cClient(path string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func tokenClient(token string) *http.Client {
	return &http.Client{Transport: bearer{token, http.DefaultTransport}}
}

func startDaemon(t *testing.T, name string, cfg daemon.Config) *daemonT {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Name, cfg.Listen, cfg.TCP, cfg.Token = name, "127.0.0.1:0", "127.0.0.1:0", testToken
	cfg.Socket = filepath.Join(t.TempDir(), "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan daemon.Info, 1)
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, cfg, nil, func(i daemon.Info) { ready <- i }) }()
	d := &daemonT{}
	select {
	case d.info = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon %s: %v", name, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("daemon %s did not start", name)
	}
	var stopped bool
	var stopErr error
	d.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			stopErr = <-done
		}
		return stopErr
	}
	t.Cleanup(func() { require.NoError(t, d.stop()) })
	d.sock = federationv1connect.NewFederationServiceClient(unixClient(d.info.Socket), "http://fednode")
	d.tcp = federationv1connect.NewFederationServiceClient(tokenClient(testToken), "http://"+d.info.TCP)
	return d
}

// code returns err's Connect code (CodeUnknown for a non-Connect error,
// 0 for nil).
func code(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// nodeForService opens a node on a temporary directory.
func nodeForService(t *testing.T) *federation.Node {
	t.Helper()
	n, err := federation.New(federation.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}
