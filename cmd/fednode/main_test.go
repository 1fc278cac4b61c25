package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/stretchr/testify/require"

	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/api/federation/v1/federationv1connect"
)

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestFednodeProcess runs the real binary from a config file (encrypted
// store, token file, loopback TCP, metrics, a manual collection, flags
// overriding the file), writes through the API, scrapes the metrics, stops
// it with SIGTERM (clean exit), and restarts it on the same data: the
// record is there, and a wrong key is refused.
func TestFednodeProcess(t *testing.T) {
	ctx := context.Background()
	bin := buildFednode(t)
	dir, etc := t.TempDir(), t.TempDir()
	key := strings.Repeat("ab", 32)
	require.NoError(t, os.WriteFile(filepath.Join(etc, "key"), []byte(key+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(etc, "token"), []byte("tok-123\n"), 0o600))
	cfg, err := json.Marshal(map[string]any{
		"dir": dir, "name": "from-file", "type": "server", "listen": "127.0.0.1:0",
		"key_file": filepath.Join(etc, "key"), "token_file": filepath.Join(etc, "token"),
		"tcp": "127.0.0.1:0", "metrics": "127.0.0.1:0", "collections": map[string]string{"plans": "manual"},
	})
	require.NoError(t, err)
	cfgPath := filepath.Join(etc, "fednode.json")
	require.NoError(t, os.WriteFile(cfgPath, cfg, 0o600))

	p := startFednode(t, bin, "-config", cfgPath, "-name", "from-flag", "-log-level", "warn")
	require.NotEqual(t, "-", p.ready["tcp"])
	require.Equal(t, filepath.Join(dir, "fednode.sock"), p.ready["socket"])
	c := federationv1connect.NewFederationServiceClient(&http.Client{Transport: bearerRT{"tok-123"}}, "http://"+p.ready["tcp"])
	_, err = c.Put(ctx, connect.NewRequest(&v1.PutRequest{Collection: "notes", Key: "k", Value: []byte("kept")}))
	require.NoError(t, err)
	bad := federationv1connect.NewFederationServiceClient(&http.Client{Transport: bearerRT{"tok-124"}}, "http://"+p.ready["tcp"])
	_, err = bad.Health(ctx, connect.NewRequest(&v1.HealthRequest{}))
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))

	res, err := http.Get("http://" + p.ready["metrics"] + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Contains(t, string(body), "\nfednode_records 1\n")
	require.Contains(t, string(body), "\nfednode_peers 0\n")

	p.stop(t) // SIGTERM: clean exit
	require.NoFileExists(t, p.ready["socket"], "a clean stop removes the socket")

	// Restart on the same directory: the record is there.
	p = startFednode(t, bin, "-config", cfgPath, "-log-level", "warn")
	c = federationv1connect.NewFederationServiceClient(&http.Client{Transport: bearerRT{"tok-123"}}, "http://"+p.ready["tcp"])
	got, err := c.Get(ctx, connect.NewRequest(&v1.GetRequest{Collection: "notes", Key: "k"}))
	require.NoError(t, err)
	require.Equal(t, "kept", string(got.Msg.Record.Value))
	p.stop(t)

	// The store is encrypted: another key is refused.
	require.NoError(t, os.WriteFile(filepath.Join(etc, "key"), []byte(hex.EncodeToString(make([]byte, 32))), 0o600))
	out, err := exec.Command(bin, "-config", cfgPath).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "key")

	// A TCP address off loopback, or TCP without a token, is refused.
	out, err = exec.Command(bin, "-dir", t.TempDir(), "-tcp", "0.0.0.0:0", "-token", "x").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "loopback only")
	out, err = exec.Command(bin, "-dir", t.TempDir(), "-tcp", "127.0.0.1:0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "needs a token")
}
