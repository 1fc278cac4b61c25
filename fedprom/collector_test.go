package fedprom_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/conflict"
	"github.com/devicemesh/federation/federationtest"
	"github.com/devicemesh/federation/fedprom"
)

// scrape gathers c through a registry of its own (as promhttp would) and
// returns every sample by "name{label=value,...}", labels in name order.
func scrape(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			out[series(f.GetName(), m)] = value(m)
		}
	}
	return out
}

// eventually polls cond for 10 s and fails with dump's account of the
// last poll.
func eventually(t *testing.T, cond func() bool, dump func() string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition never satisfied; last scrape:\n%s", dump())
		}
	}
}

// key names a series as scrape does, from label name and value pairs.
func key(name string, kv ...string) string {
	var ls []string
	for i := 0; i+1 < len(kv); i += 2 {
		ls = append(ls, kv[i]+"="+kv[i+1])
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

func series(name string, m *dto.Metric) string {
	var ls []string
	for _, l := range m.GetLabel() {
		ls = append(ls, l.GetName()+"="+l.GetValue())
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

// TestCollectorOnTwoSyncedNodes scrapes the collectors of two real nodes
// as they sync: records, sessions, the changes each sent and received per
// peer (matching the other side's count and Node.Peers), a queued manual
// conflict, an offline peer's backlog, the wanted list and the selective
// sync counters of a fetch.
func TestCollectorOnTwoSyncedNodes(t *testing.T) {
	ctx := context.Background()
	m := federationtest.NewMesh(t, 2, federationtest.Options{Seed: 3, Config: func(i int, c *federation.Config) {
		c.Collections = map[string]federation.Policy{
			"decisions": {Resolver: conflict.Manual{}},
			"vectors":   {Mode: federation.ModeOnDemand},
		}
	}})
	a, b := m.Node(0), m.Node(1)
	ca, cb := fedprom.New(a, fedprom.Options{Namespace: "fed"}), fedprom.New(b, fedprom.Options{Namespace: "fed"})
	idA, idB := a.DeviceID().String(), b.DeviceID().String()

	for i := range 3 {
		require.NoError(t, a.Put(ctx, "notes", fmt.Sprint(i), []byte("note")))
	}
	require.NoError(t, a.Put(ctx, "decisions", "plan", []byte("move to Lisbon")))
	require.NoError(t, a.Put(ctx, "vectors", "v", []byte("a large embedding")))
	require.NoError(t, b.Put(ctx, "decisions", "plan", []byte("stay in Berlin")))

	// Unconnected: the store only, no session, nothing exchanged.
	require.NoError(t, testutil.CollectAndCompare(ca, strings.NewReader(`
# HELP fed_records Live records in the store.
# TYPE fed_records gauge
fed_records 5
# HELP fed_peers Live sync sessions (connected peers).
# TYPE fed_peers gauge
fed_peers 0
`), "fed_records", "fed_peers"))
	sa := scrape(t, ca)
	require.NotContains(t, sa, key("fed_peer_changes_total", "peer", idB, "direction", "sent"))
	require.NotContains(t, sa, "fed_conflicts_queued{collection=decisions}")

	m.ConnectAll(ctx)
	var sb map[string]float64
	eventually(t, func() bool {
		sa, sb = scrape(t, ca), scrape(t, cb)
		// 3 notes, v (a stub on b), each side's own plan, and the queued
		// conflict (a record of the SDK's conflicts collection).
		return sa["fed_records{}"] == 6 && sb["fed_records{}"] == 6 &&
			sa["fed_conflicts_queued{collection=decisions}"] == 1 && sb["fed_conflicts_queued{collection=decisions}"] == 1 &&
			sa[key("fed_peer_changes_total", "peer", idB, "direction", "sent")] == sb[key("fed_peer_changes_total", "peer", idA, "direction", "recv")] &&
			sb[key("fed_peer_changes_total", "peer", idA, "direction", "sent")] == sa[key("fed_peer_changes_total", "peer", idB, "direction", "recv")]
	}, func() string { return fmt.Sprintf("a: %v\nb: %v", sa, sb) })
	require.Equal(t, 1.0, sa["fed_peers{}"])
	require.Equal(t, 1.0, sa[key("fed_peer_connected", "peer", idB)])
	require.GreaterOrEqual(t, sa[key("fed_peer_changes_total", "peer", idB, "direction", "sent")], 5.0, "a sent its five writes")
	require.GreaterOrEqual(t, sb[key("fed_peer_changes_total", "peer", idA, "direction", "sent")], 1.0, "b sent its plan")
	require.Greater(t, sa[key("fed_peer_bytes_total", "peer", idB, "direction", "sent")], 0.0)
	require.Greater(t, sa[key("fed_peer_frames_total", "peer", idB, "direction", "recv")], 0.0)
	require.GreaterOrEqual(t, sa[key("fed_peer_stubs_sent_total", "peer", idB)], 1.0, "v went to b as a stub")
	require.GreaterOrEqual(t, sb[key("fed_peer_conflicts_total", "peer", idA)]+sa[key("fed_peer_conflicts_total", "peer", idB)], 1.0)
	for _, p := range a.Peers() { // the same figures as Node.Peers
		require.Equal(t, float64(p.ChangesSent), scrape(t, ca)[key("fed_peer_changes_total", "peer", idB, "direction", "sent")])
	}

	// b is cut off: a's next write waits for it, b's fetch stays wanted.
	m.Partition([]int{0}, []int{1})
	require.NoError(t, a.Put(ctx, "notes", "while-away", []byte("later")))
	require.NoError(t, b.Fetch(ctx, "vectors", "v"))
	eventually(t, func() bool {
		sa, sb = scrape(t, ca), scrape(t, cb)
		return sa["fed_peers{}"] == 0 && sa[key("fed_peer_connected", "peer", idB)] == 0 &&
			sa[key("fed_sync_waiting", "collection", "", "peer", idB, "reason", "offline")] >= 1 &&
			sb["fed_wanted_keys{collection=vectors}"] == 1
	}, func() string { return fmt.Sprintf("a: %v\nb: %v", sa, sb) })
	require.NotContains(t, sa, key("fed_peer_changes_total", "peer", idB, "direction", "sent"), "no session, no per-session series")

	// Healed: the note arrives, the value is fetched and leaves the wanted list.
	m.Heal()
	m.ConnectAll(ctx)
	eventually(t, func() bool {
		sa, sb = scrape(t, ca), scrape(t, cb)
		return sb["fed_records{}"] == 7 && sb[key("fed_peer_values_total", "peer", idA, "direction", "recv")] == 1 &&
			sa[key("fed_peer_values_total", "peer", idB, "direction", "sent")] == 1 && sb[key("fed_peer_wants_sent_total", "peer", idA)] >= 1 &&
			sb["fed_wanted_keys{collection=vectors}"] == 0
	}, func() string { return fmt.Sprintf("a: %v\nb: %v", sa, sb) })
	require.NotContains(t, sb, "fed_wanted_keys{collection=vectors}")
	require.Equal(t, 1.0, sb["fed_conflicts_queued{collection=decisions}"], "still waiting for the host")
}

// TestCollectorCountsRefusals: a pairing the user declines is a refusal,
// counted by reason.
func TestCollectorCountsRefusals(t *testing.T) {
	ctx := context.Background()
	node := func(name string) *federation.Node {
		n, err := federation.New(federation.Config{Dir: t.TempDir(), Device: federation.DeviceConfig{Name: name},
			Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		require.NoError(t, n.Start(ctx))
		return n
	}
	phone, stranger := node("phone"), node("stranger")
	c := fedprom.New(phone, fedprom.Options{})
	require.NotContains(t, scrape(t, c), "federation_refusals_total{reason=pairing-failed}")
	inv, err := phone.Invite(ctx, federation.InviteOptions{Approve: func(context.Context, federation.PairRequest) (bool, error) {
		return false, nil
	}})
	require.NoError(t, err)
	_, err = stranger.Join(ctx, inv.QR, federation.JoinOptions{})
	require.Error(t, err)
	require.Eventually(t, func() bool {
		return scrape(t, c)["federation_refusals_total{reason=pairing-failed}"] == 1
	}, 5*time.Second, 20*time.Millisecond)
}
