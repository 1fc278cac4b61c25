package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/devicemesh/federation"
	v1 "github.com/devicemesh/federation/api/federation/v1"
	"github.com/devicemesh/federation/api/federation/v1/federationv1connect"
	"github.com/devicemesh/federation/internal/daemon"
)

// apiDaemonEnv, set in the environment, makes this program a fednode
// daemon (daemon.Run) on the directory it names instead of a benchmark:
// runAPI starts its own executable that way, so that the API is measured
// from another process, as a host would use it.
const apiDaemonEnv = "FEDBENCH_API_DAEMON_DIR"

func init() {
	if dir := os.Getenv(apiDaemonEnv); dir != "" {
		os.Exit(apiDaemonMain(dir))
	}
}

// apiDaemonMain serves the API on dir/api.sock until SIGTERM.
func apiDaemonMain(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := daemon.Config{Dir: dir, Name: "bench", Listen: "127.0.0.1:0", Socket: filepath.Join(dir, "api.sock")}
	err := daemon.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(i daemon.Info) { fmt.Println(i.String()) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "fedbench api daemon:", err)
		return 1
	}
	return 0
}

// runAPI measures records/s written through fednode's API (Connect, binary
// protobuf, over the Unix socket) by this process into a daemon running as
// another process, against Node.Update in this process, with the same
// batches (one transaction each) and values; the sides alternate, best
// round counts. The API side sends one Batch request at a time and waits
// for its answer, as a simple host would.
func runAPI(ctx context.Context, args []string) (result, error) {
	fs := newFlags("api")
	n := fs.Int("n", 50000, "records to write per measurement")
	batch := fs.Int("batch", 100, "records per Batch request (and per in-process transaction)")
	valueLen := fs.Int("value", 256, "value size in bytes")
	rounds := fs.Int("rounds", 3, "measurements of each side (best counts)")
	single := fs.Int("single", 3000, "records for the unbatched comparison (one Put per record on both sides; 0 skips it)")
	if err := fs.Parse(args); err != nil {
		return result{}, err
	}
	if *batch < 1 || *batch > daemon.MaxBatchWrites || *n < *batch {
		return result{}, fmt.Errorf("-batch must be in 1..%d and at most -n", daemon.MaxBatchWrites)
	}
	root, err := os.MkdirTemp("", "fedbench-api-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(root)

	client, stopDaemon, err := startAPIDaemon(ctx, filepath.Join(root, "daemon"))
	if err != nil {
		return result{}, err
	}
	defer stopDaemon()
	local, err := federation.New(federation.Config{Dir: filepath.Join(root, "local"), Device: federation.DeviceConfig{Name: "bench"}})
	if err != nil {
		return result{}, err
	}
	defer local.Close()

	value := make([]byte, *valueLen)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	key := func(round, i int) string { return fmt.Sprintf("r%02d-%09d", round, i) }
	viaAPI := func(round, count, per int) (float64, error) {
		start := time.Now()
		for i := 0; i < count; i += per {
			if per == 1 {
				_, err := client.Put(ctx, connect.NewRequest(&v1.PutRequest{Collection: "bench", Key: key(round, i), Value: value}))
				if err != nil {
					return 0, err
				}
				continue
			}
			ws := make([]*v1.Write, 0, per)
			for j := i; j < i+per && j < count; j++ {
				ws = append(ws, &v1.Write{Collection: "bench", Key: key(round, j), Value: value})
			}
			if _, err := client.Batch(ctx, connect.NewRequest(&v1.BatchRequest{Writes: ws})); err != nil {
				return 0, err
			}
		}
		return float64(count) / time.Since(start).Seconds(), nil
	}
	inProcess := func(round, count, per int) (float64, error) {
		start := time.Now()
		for i := 0; i < count; i += per {
			if per == 1 {
				if err := local.Put(ctx, "bench", key(round, i), value); err != nil {
					return 0, err
				}
				continue
			}
			err := local.Update(ctx, func(tx *federation.Tx) error {
				for j := i; j < i+per && j < count; j++ {
					if err := tx.Put("bench", key(round, j), value); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
		return float64(count) / time.Since(start).Seconds(), nil
	}

	var bestAPI, bestLocal float64
	for r := range *rounds {
		a, err := viaAPI(r, *n, *batch)
		if err != nil {
			return result{}, fmt.Errorf("api round %d: %w", r, err)
		}
		l, err := inProcess(r, *n, *batch)
		if err != nil {
			return result{}, fmt.Errorf("in-process round %d: %w", r, err)
		}
		progress("round %d: API %.0f records/s, in-process %.0f records/s (batch %d, %d B values)", r, a, l, *batch, *valueLen)
		bestAPI, bestLocal = max(bestAPI, a), max(bestLocal, l)
	}
	res := result{Scenario: "api", Ours: bestAPI, Baseline: bestLocal, Unit: "records/s", Ratio: bestAPI / bestLocal,
		Target: "ratio >= 0.3", Extra: map[string]any{"batch": *batch, "n": *n, "value_bytes": *valueLen,
			"transport": "Connect binary protobuf over a Unix socket, one request in flight"}}
	res.Pass = res.Ratio >= 0.3
	if *single > 0 {
		a, err := viaAPI(100, *single, 1)
		if err != nil {
			return result{}, fmt.Errorf("api unbatched: %w", err)
		}
		l, err := inProcess(100, *single, 1)
		if err != nil {
			return result{}, fmt.Errorf("in-process unbatched: %w", err)
		}
		progress("unbatched: API Put %.0f records/s, in-process Put %.0f records/s (ratio %.2f)", a, l, a/l)
		res.Extra["unbatched_api"], res.Extra["unbatched_in_process"], res.Extra["unbatched_ratio"] = a, l, a/l
	}
	// The daemon really holds what the API wrote.
	st, err := client.Stats(ctx, connect.NewRequest(&v1.StatsRequest{}))
	if err != nil {
		return result{}, err
	}
	want := int64(*rounds**n + *single)
	if st.Msg.Records != want {
		return result{}, fmt.Errorf("the daemon holds %d records, want %d", st.Msg.Records, want)
	}
	return res, nil
}

// startAPIDaemon runs this executable as a daemon on dir and returns a
// client of its Unix socket and a function that stops it.
func startAPIDaemon(ctx context.Context, dir string) (federationv1connect.FederationServiceClient, func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), apiDaemonEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "fednode ready") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		stop()
		return nil, nil, errors.New("the API daemon did not start")
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	}
	sock := filepath.Join(dir, "api.sock")
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}}
	return federationv1connect.NewFederationServiceClient(hc, "http://fednode"), stop, nil
}
