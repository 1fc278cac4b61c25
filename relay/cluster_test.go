package relay_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation"
)

// freePort returns a TCP port free on loopback a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsCluster starts three NATS nodes (fedrelay -nats-only) routed to
// each other on loopback.
func natsCluster(t *testing.T) []*relayProc {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var nodes []*relayProc
	for i := range 3 {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		nodes = append(nodes, startRelay(t, "-nats-only", "-nats-port", "0", "-server-name", fmt.Sprintf("n%d", i+1),
			"-cluster-port", fmt.Sprint(ports[i]), "-routes", strings.Join(routes, ",")))
	}
	return nodes
}

func healthy(p *relayProc) bool {
	resp, err := http.Get("http://" + p.ready["http"] + "/healthz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestRelayClusterConverge: two fedrelay processes share a three-node NATS
// cluster; the phone is attached to one relay, the laptop and the tablet
// to the other, every direct path is blocked. The devices converge, the
// packets between the relays crossing NATS; then the NATS node both relays
// were connected to is killed, the relays fail over to the other nodes, and
// writes made after still reach every device.
func TestRelayClusterConverge(t *testing.T) {
	cluster := natsCluster(t)
	// Both relays know only n1: they learn the other nodes from the
	// cluster, and must fail over to them once n1 dies.
	a := startRelay(t, "-nats", cluster[0].ready["nats"])
	b := startRelay(t, "-nats", cluster[0].ready["nats"])
	phone, fp := relayedNode(t, "phone", "quic://"+a.ready["udp"])
	laptop, fl := relayedNode(t, "laptop", "quic://"+b.ready["udp"])
	tablet, ft := relayedNode(t, "tablet", "tls://"+b.ready["tls"])
	nodes := []*federation.Node{phone, laptop, tablet}
	pair(t, phone, laptop)
	pair(t, phone, tablet)
	sameSecret(t, nodes...)
	for _, f := range []*filterConn{fp, fl, ft} {
		f.blocked.Store(true)
	}
	ctx := context.Background()
	round := func(name string) {
		t.Helper()
		for i, n := range nodes {
			if err := n.Put(ctx, "notes", fmt.Sprintf("%s-%d", name, i), []byte(name)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 60*time.Second, "convergence ("+name+")", func() bool {
			for _, n := range nodes {
				for i := range nodes {
					if !holds(n, "notes", fmt.Sprintf("%s-%d", name, i), name) {
						return false
					}
				}
			}
			return true
		})
	}
	round("before")
	viaNATS := a.metric(t, `fedrelay_packets_forwarded_total{path="nats"}`) + b.metric(t, `fedrelay_packets_forwarded_total{path="nats"}`)
	if viaNATS == 0 {
		t.Fatal("the devices on different relays converged, but no packet crossed NATS")
	}
	t.Logf("packets between the relays through NATS: %.0f", viaNATS)

	cluster[0].kill()
	eventually(t, 30*time.Second, "both relays reconnect to the NATS cluster", func() bool { return healthy(a) && healthy(b) })
	for _, r := range []*relayProc{a, b} {
		eventually(t, 30*time.Second, "the relay logs its NATS failover", func() bool {
			log, _ := os.ReadFile(r.logPath)
			return strings.Contains(string(log), "nats reconnected")
		})
	}
	before := a.metric(t, `fedrelay_packets_forwarded_total{path="nats"}`)
	round("after")
	if after := a.metric(t, `fedrelay_packets_forwarded_total{path="nats"}`); after <= before {
		t.Fatalf("after the NATS node died, relay A forwarded nothing through NATS (%v then %v)", before, after)
	}
}
