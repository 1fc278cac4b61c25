package mdns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/discovery"
)

// fields flattens an answer into the values an observer on the LAN reads,
// each tagged with the field it came from.
func fields(t *testing.T, rrs []dns.RR) []string {
	t.Helper()
	var out []string
	add := func(f string, v any) { out = append(out, fmt.Sprintf("%s=%v", f, v)) }
	// A name is also read label by label: a label that stays the same
	// while its suffix changes would still link.
	name := func(f, n string) {
		add(f, n)
		for _, l := range dns.SplitDomainName(n) {
			add("label", l)
		}
	}
	for _, rr := range rrs {
		h := rr.Header()
		typ := dns.TypeToString[h.Rrtype]
		name(typ+".name", h.Name)
		add(typ+".ttl", h.Ttl)
		add(typ+".class", h.Class)
		switch r := rr.(type) {
		case *dns.PTR:
			name("PTR.ptr", r.Ptr)
		case *dns.SRV:
			name("SRV.target", r.Target)
			add("SRV.port", r.Port)
			add("SRV.priority", r.Priority)
			add("SRV.weight", r.Weight)
		case *dns.TXT:
			for i, s := range r.Txt {
				add(fmt.Sprintf("TXT.%d", i), s)
			}
		case *dns.A:
			add("A", r.A)
		default:
			t.Fatalf("unexpected record %T", rr)
		}
	}
	return out
}

func answer(t *testing.T, m *MDNS) []dns.RR {
	t.Helper()
	sec, err := m.cfg.Mesh.Secret()
	require.NoError(t, err)
	e := discovery.Epoch(m.cfg.Clock.Now(), m.cfg.Period)
	rrs, err := m.records(dns.Question{Name: m.ServiceName(sec, e) + ".local.", Qtype: dns.TypePTR, Qclass: dns.ClassINET})
	require.NoError(t, err)
	require.Len(t, rrs, 4)
	return rrs
}

// TestADayOfAnnouncementsIsUnlinkable records what one device serves over
// a simulated day of 15-minute rotations (a Mesh with fixed addresses) and
// checks that no field value of one epoch's answer reappears in another's,
// except values that a device of another mesh serves too (constants of the
// protocol, which single out nobody).
func TestADayOfAnnouncementsIsUnlinkable(t *testing.T) {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	clk := core.NewManualClock(start)
	addrs := func() []string { return []string{"192.168.1.20:4433", "[fd00::20]:4433"} }
	build := func(seed, mesh byte) *MDNS {
		m, err := New(Config{Mesh: &testMesh{Identity: seedID(seed), secret: meshSecret(mesh), addrs: addrs}, Clock: clk, Period: 15 * time.Minute})
		require.NoError(t, err)
		return m
	}
	dev, other := build(alice, meshA), build(eve, meshB)

	common := map[string]bool{}
	for _, f := range fields(t, answer(t, other)) {
		common[f] = true
	}
	firstSeen := map[string]int{}
	epochs := 0
	for at := start; at.Before(start.Add(24 * time.Hour)); at = at.Add(15 * time.Minute) {
		clk.Set(at.Add(7 * time.Minute))
		for _, f := range fields(t, answer(t, dev)) {
			if prev, ok := firstSeen[f]; ok && prev != epochs && !common[f] {
				t.Fatalf("epochs %d and %d share %s: an observer links them", prev, epochs, f)
			}
			if _, ok := firstSeen[f]; !ok {
				firstSeen[f] = epochs
			}
		}
		epochs++
	}
	require.Equal(t, 96, epochs)
	// The announcement itself carries the addresses, yet none shows.
	for f := range firstSeen {
		require.NotContains(t, f, "192.168.1.20")
		require.NotContains(t, f, "4433")
	}
	// Within one epoch the same answer is served twice, resealed after a
	// while with a fresh nonce: even the TXT does not repeat.
	clk.Set(start.Add(time.Minute))
	a := fields(t, answer(t, dev))
	clk.Set(start.Add(time.Minute + resealAfter + time.Second))
	b := fields(t, answer(t, dev))
	txt := func(fs []string) string {
		for _, f := range fs {
			if strings.HasPrefix(f, "TXT.0=") {
				return f
			}
		}
		t.Fatal("no TXT")
		return ""
	}
	require.NotEqual(t, txt(a), txt(b), "TXT resealed")
}

// TestRecordsAnswerOnlyOwnNames checks that the zone answers its current
// names only, and nothing without a secret generation it holds.
func TestRecordsAnswerOnlyOwnNames(t *testing.T) {
	clk := core.NewManualClock(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	mesh := &testMesh{Identity: seedID(alice), secret: meshSecret(meshA), addrs: func() []string { return []string{"10.0.0.1:1"} }}
	m, err := New(Config{Mesh: mesh, Clock: clk, Period: time.Hour})
	require.NoError(t, err)
	sec, _ := mesh.Secret()
	e := discovery.Epoch(clk.Now(), time.Hour)
	q := func(name string, qt uint16) int {
		rrs, err := m.records(dns.Question{Name: name, Qtype: qt, Qclass: dns.ClassINET})
		require.NoError(t, err)
		return len(rrs)
	}
	n := m.names(sec, e)
	require.Equal(t, 4, q(n.service, dns.TypePTR))
	require.Equal(t, 4, q(n.instance, dns.TypeSRV))
	require.Equal(t, 4, q(n.host, dns.TypeA))
	require.Zero(t, q(n.service, dns.TypeA))
	require.Zero(t, q(m.ServiceName(sec, e+3)+".local.", dns.TypePTR), "a later epoch's name")
	require.Zero(t, q(m.ServiceName(meshSecret(meshB), e)+".local.", dns.TypePTR), "another mesh's name")
	next := sec
	next.Generation++
	require.Zero(t, q(m.ServiceName(next, e)+".local.", dns.TypePTR), "the next generation's name before the rotation")
	mesh.mu.Lock()
	mesh.secret = next
	mesh.mu.Unlock()
	require.Equal(t, 4, q(m.ServiceName(next, e)+".local.", dns.TypePTR), "served at once after the rotation")
	require.Zero(t, q(n.service, dns.TypePTR), "the revoked generation's name is no longer answered")
}
