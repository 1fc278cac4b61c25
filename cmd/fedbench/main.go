// Command fedbench is the project's benchmark program. Each scenario
// measures the SDK against a baseline run side by side on the same machine in
// the same process (raw go-libsql, raw quic-go), prints readable progress to
// stderr, and ends with one line on stdout:
//
//	RESULT {"scenario":"write","ours":...,"baseline":...,"unit":"rows/s","ratio":...}
//
// where ratio is ours divided by baseline. Usage:
//
//	go run ./cmd/fedbench <scenario> [flags]
//	go run ./cmd/fedbench list
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
)

// scenario runs one benchmark with its own flags and returns its result.
type scenario struct {
	help string
	run  func(ctx context.Context, args []string) (result, error)
}

// result is what every scenario reports.
type result struct {
	Scenario string  `json:"scenario"`
	Ours     float64 `json:"ours"`
	Baseline float64 `json:"baseline"`
	Unit     string  `json:"unit"`
	Ratio    float64 `json:"ratio"`
	// Target is the goal for Ratio, as text ("ratio >= 0.5").
	Target string `json:"target,omitempty"`
	// Pass reports whether Ratio meets Target.
	Pass  bool           `json:"pass"`
	Extra map[string]any `json:"extra,omitempty"`
}

func scenarios() map[string]scenario {
	return map[string]scenario{
		"write":        {"Put throughput through Node vs raw go-libsql inserts", runWrite},
		"transport":    {"goodput of an authenticated stream vs raw quic-go", runTransport},
		"connect":      {"dial to first authenticated byte vs bare quic-go handshake + RTT", runConnect},
		"initial-sync": {"records/s for a fresh device to receive n records vs raw go-libsql inserts; receiver peak RSS", runInitialSync},
		"delta":        {"sync-stream bytes to catch up after d of n records changed, per changed byte", runDelta},
		"insync":       {"time to establish two devices are in sync at n = 1M vs n = 1000", runInsync},
		"repair":       {"bytes of a Merkle repair (changelog truncated) after d of n records changed, per changed byte", runRepair},
		"merge":        {"resolved conflicts/s for n concurrent record pairs (LWW, chronological) vs plain apply of n changes", runMerge},
		"api":          {"records/s written through fednode's API from a client process vs Node.Update in-process, same batches", runAPI},
		"discover":     {"time for two paired devices starting on one LAN to sync a record found by mDNS vs the address given by hand (root)", runDiscover},
		"discover-dht": {"time for two paired devices starting on loopback to sync a record found through a loopback DHT vs the address given by hand", runDiscoverDHT},
		"relay":        {"goodput of a session through a relay vs the direct path; added round-trip time", runRelay},
		"latency":      {"p50/p99 from Put to visible at a connected peer vs a bare quic-go ping-pong, idle and while a 100,000-record low-priority backlog moves", runLatency},
		// lane h26
		"blob":      {"media goodput: a node fetching a blob from its peer vs raw quic-go file to file", runBlob},
		"blob-edit": {"blob-stream bytes to update a peer after a 1 MiB edit in a 256 MiB blob, vs 1 MiB", runBlobEdit},
	}
}

func main() {
	all := scenarios()
	if len(os.Args) == 3 && os.Args[1] == discoverNodeArg {
		runDiscoverNode(os.Args[2]) // a node process of runDiscover
		return
	}
	if len(os.Args) < 2 || os.Args[1] == "list" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		usage(all)
		return
	}
	sc, ok := all[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "fedbench: unknown scenario %q\n", os.Args[1])
		usage(all)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := sc.run(ctx, os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "fedbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

func usage(all map[string]scenario) {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: fedbench <scenario> [flags]   (fedbench <scenario> -h for its flags)")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, all[n].help)
	}
}

// progress prints a progress line to stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// newFlags returns a flag set for a scenario that reports its errors.
func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("fedbench "+name, flag.ContinueOnError)
}
