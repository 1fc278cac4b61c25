package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
)

// catchUpParams are the flags of the delta and repair scenarios.
type catchUpParams struct {
	n, d, valueLen, rounds int
	state                  string
}

func catchUpFlags(name string, args []string) (catchUpParams, error) {
	fs := newFlags(name)
	var p catchUpParams
	fs.IntVar(&p.n, "n", 1000000, "records both devices hold")
	fs.IntVar(&p.d, "d", 100, "records A changes while disconnected")
	fs.IntVar(&p.valueLen, "value", 1024, "value size in bytes")
	fs.IntVar(&p.rounds, "rounds", 3, "reconnections measured (median counts)")
	fs.StringVar(&p.state, "state", "", "directory where the prepared pair is kept and reused (default: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	if p.n <= 0 || p.d <= 0 || p.d > p.n || p.valueLen < 0 || p.rounds <= 0 {
		return p, errors.New(name + ": need 0 < -d <= -n, -rounds > 0, -value >= 0")
	}
	return p, nil
}

// runDelta measures what it costs on the wire to bring a device up to date
// after its peer changed d of n records while they were apart: the bytes of
// the sync streams (both directions, from PeerStatus of the new sessions)
// divided by the payload that changed, d x (value + key).
func runDelta(ctx context.Context, args []string) (result, error) {
	p, err := catchUpFlags("delta", args)
	if err != nil {
		return result{}, err
	}
	return runCatchUp(ctx, "delta", p, false, 1.5)
}

// runRepair is delta with A's changelog truncated entirely before the
// reconnection, so only a Merkle repair can bring B up to date.
func runRepair(ctx context.Context, args []string) (result, error) {
	p, err := catchUpFlags("repair", args)
	if err != nil {
		return result{}, err
	}
	return runCatchUp(ctx, "repair", p, true, 3)
}

// catchUp is one measured reconnection.
type catchUp struct {
	took         time.Duration
	a, b         federation.PeerStatus // at the moment B was up to date
	aEnd, bEnd   federation.PeerStatus // once both sides announced CaughtUp
	truncated    int64
	changedBytes int
	// loBytes and loPackets are what crossed the loopback interface from
	// the dial until both sides announced CaughtUp: QUIC, TLS, Noise and
	// the sync stream (system-wide, so other traffic on lo adds to it).
	loBytes, loPackets int64
}

func runCatchUp(ctx context.Context, name string, p catchUpParams, truncate bool, target float64) (result, error) {
	pair, err := preparePair(ctx, name, p.state, p.n, p.valueLen)
	if err != nil {
		return result{}, err
	}
	defer pair.close()
	var runs []catchUp
	for r := 0; r < p.rounds; r++ {
		c, err := measureCatchUp(ctx, pair, p, truncate)
		if err != nil {
			return result{}, fmt.Errorf("%s round %d: %w", name, r+1, err)
		}
		runs = append(runs, c)
		progress("%s: round %d/%d: B up to date in %.1f ms; sync stream %d B (A→B %d in %d frames, B→A %d in %d frames) for %d B changed: ratio %.3f; settled %d B, ratio %.3f; repairs %d, records sent %d",
			name, r+1, p.rounds, ms(c.took), c.a.BytesSent+c.b.BytesSent, c.a.BytesSent, c.a.FramesSent, c.b.BytesSent, c.b.FramesSent,
			c.changedBytes, wireRatio(c.a, c.b, c.changedBytes), c.aEnd.BytesSent+c.bEnd.BytesSent, wireRatio(c.aEnd, c.bEnd, c.changedBytes),
			c.aEnd.Repairs+c.bEnd.Repairs, c.aEnd.RecordsSent)
		progress("%s: round %d/%d: loopback carried %d B in %d packets from dial to settled (all of QUIC, handshake included; system-wide)", name, r+1, p.rounds, c.loBytes, c.loPackets)
	}
	// The median round by settled bytes is the headline.
	med := medianRun(runs)
	ours := float64(med.aEnd.BytesSent + med.bEnd.BytesSent)
	base := float64(med.changedBytes)
	res := result{
		Scenario: name, Ours: ours, Baseline: base, Unit: "bytes",
		Ratio: ours / base, Target: fmt.Sprintf("ratio <= %g", target),
	}
	res.Pass = res.Ratio <= target
	// Round trips until B is up to date, from the frames each side sent:
	// B's Hello, then A's changes (or repair exchange) answering it.
	res.Extra = map[string]any{
		"n": p.n, "d": p.d, "value_bytes": p.valueLen, "rounds": p.rounds,
		"changed_bytes":            med.changedBytes,
		"bytes_at_up_to_date":      med.a.BytesSent + med.b.BytesSent,
		"ratio_at_up_to_date":      wireRatio(med.a, med.b, med.changedBytes),
		"bytes_a_to_b":             med.aEnd.BytesSent,
		"bytes_b_to_a":             med.bEnd.BytesSent,
		"frames_a_to_b_up_to_date": med.a.FramesSent,
		"frames_b_to_a_up_to_date": med.b.FramesSent,
		"frames_a_to_b_settled":    med.aEnd.FramesSent,
		"frames_b_to_a_settled":    med.bEnd.FramesSent,
		"repairs":                  med.aEnd.Repairs + med.bEnd.Repairs,
		"records_sent_by_repair":   med.aEnd.RecordsSent,
		"changes_sent":             med.aEnd.ChangesSent,
		"ms_to_up_to_date":         ms(med.took),
		"ratio_rounds":             ratios(runs),
		"handshake_bytes_excluded": "QUIC/TLS + Noise handshake bytes are below the sync stream and not in PeerStatus (a fixed cost per connection, not per change)",
		"loopback_bytes":           med.loBytes,
		"loopback_packets":         med.loPackets,
		"loopback_ratio":           float64(med.loBytes) / base,
		"loopback_note":            "everything on lo from dial to settled (QUIC+TLS+Noise handshake, packet headers, AEAD tags, ACKs, sync stream); system-wide, so other traffic adds to it",
	}
	if truncate {
		res.Extra["changelog_entries_truncated"] = med.truncated
	}
	return res, nil
}

// measureCatchUp changes d records on A while the pair is apart (truncating
// A's whole changelog when asked), reconnects and measures until B holds
// what A holds and both sides announced CaughtUp.
func measureCatchUp(ctx context.Context, pair *syncPair, p catchUpParams, truncate bool) (catchUp, error) {
	a, b := pair.a, pair.b
	var c catchUp
	if err := changeRecords(ctx, a.node, p.n, p.d, p.valueLen); err != nil {
		return c, err
	}
	c.changedBytes = p.d * (p.valueLen + len(syncKey(0)))
	if truncate {
		vv, err := a.store.VersionVector(ctx)
		if err != nil {
			return c, err
		}
		if c.truncated, err = a.store.Truncate(ctx, vv); err != nil {
			return c, fmt.Errorf("truncate: %w", err)
		}
	}
	lo0, lp0 := loopbackCounters()
	start := time.Now()
	if err := reconnect(ctx, a, b); err != nil {
		return c, err
	}
	took, err := waitSame(ctx, "catch up", a, b, start, 200*time.Microsecond, 10*time.Minute)
	if err != nil {
		return c, err
	}
	c.took = took
	c.a, c.b = sumPeers(a.node.Peers()), sumPeers(b.node.Peers())
	// Settle: both sides have announced CaughtUp at the common version.
	vv, err := a.store.VersionVector(ctx)
	if err != nil {
		return c, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !announced(a.node.Peers(), vv) || !announced(b.node.Peers(), vv) {
		if time.Now().After(deadline) {
			return c, errors.New("no CaughtUp at the common version")
		}
		time.Sleep(200 * time.Microsecond)
	}
	c.aEnd, c.bEnd = sumPeers(a.node.Peers()), sumPeers(b.node.Peers())
	lo1, lp1 := loopbackCounters()
	c.loBytes, c.loPackets = lo1-lo0, lp1-lp0
	return c, disconnect(ctx, a, b)
}

// announced reports whether the (one) peer announced CaughtUp at vv.
func announced(ps []federation.PeerStatus, vv core.VersionVector) bool {
	return len(ps) == 1 && ps[0].CaughtUp.Compare(vv) == core.Equal
}

func wireRatio(a, b federation.PeerStatus, changed int) float64 {
	return float64(a.BytesSent+b.BytesSent) / float64(changed)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ratios(runs []catchUp) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = wireRatio(r.aEnd, r.bEnd, r.changedBytes)
	}
	return out
}

// medianRun returns the run with the median settled byte count.
func medianRun(runs []catchUp) catchUp {
	sorted := append([]catchUp(nil), runs...)
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].aEnd.BytesSent+sorted[j].bEnd.BytesSent < sorted[j-1].aEnd.BytesSent+sorted[j-1].bEnd.BytesSent; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	return sorted[len(sorted)/2]
}

// loopbackCounters returns the bytes and packets received on the loopback
// interface so far (from /proc/net/dev; zeros when unavailable).
func loopbackCounters() (bytes, packets int64) {
	b, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			return 0, 0
		}
		bytes, _ = strconv.ParseInt(f[0], 10, 64)
		packets, _ = strconv.ParseInt(f[1], 10, 64)
		return bytes, packets
	}
	return 0, 0
}
