// Package mailtest runs NATS servers with JetStream for tests of relay
// mail: one embedded server on a directory (restartable on the same
// files), or a cluster of several on loopback, any of which a test can
// kill and restart.
package mailtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Node is one NATS server of a test.
type Node struct {
	Name    string
	Dir     string // JetStream store directory
	Port    int    // client port on 127.0.0.1
	Cluster int    // route port (0: no cluster)
	Routes  []int  // the other nodes' route ports
	Srv     *natsserver.Server
}

// URL is the node's client URL.
func (n *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// FreePort returns a TCP port free on loopback now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts (or restarts, on the same directory and ports) the node.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	opts := &natsserver.Options{
		ServerName: n.Name,
		Host:       "127.0.0.1",
		Port:       n.Port,
		JetStream:  true,
		StoreDir:   n.Dir,
		NoLog:      true,
		NoSigs:     true,
	}
	if n.Cluster != 0 {
		opts.Cluster = natsserver.ClusterOpts{Name: "fedmail-test", Host: "127.0.0.1", Port: n.Cluster}
		for _, p := range n.Routes {
			u, _ := url.Parse(fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			opts.Routes = append(opts.Routes, u)
		}
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats %s: %v", n.Name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("nats %s not ready", n.Name)
	}
	n.Srv = s
	t.Cleanup(n.Stop)
}

// Stop shuts the node down (a no-op when it is down).
func (n *Node) Stop() {
	if n.Srv != nil {
		n.Srv.Shutdown()
		n.Srv.WaitForShutdown()
		n.Srv = nil
	}
}

// Single starts one embedded server with JetStream on dir.
func Single(t testing.TB, dir string) *Node {
	t.Helper()
	n := &Node{Name: "single", Dir: dir, Port: FreePort(t)}
	n.Start(t)
	return n
}

// Cluster starts a cluster of size nodes on loopback, each with its own
// store under dir, and waits until JetStream has a meta leader.
func Cluster(t testing.TB, dir string, size int) []*Node {
	t.Helper()
	nodes := make([]*Node, size)
	for i := range nodes {
		nodes[i] = &Node{Name: fmt.Sprintf("n%d", i), Dir: filepath.Join(dir, fmt.Sprintf("n%d", i)), Port: FreePort(t), Cluster: FreePort(t)}
	}
	for i, n := range nodes {
		for j, o := range nodes {
			if i != j {
				n.Routes = append(n.Routes, o.Cluster)
			}
		}
	}
	for _, n := range nodes {
		n.Start(t)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, n := range nodes {
			if n.Srv.JetStreamIsLeader() {
				return nodes
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nats cluster elected no JetStream leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs lists the client URLs of nodes, comma-separated (nats.Connect's
// form).
func URLs(nodes ...*Node) string {
	var us []string
	for _, n := range nodes {
		us = append(us, n.URL())
	}
	return strings.Join(us, ",")
}

// Connect connects to urls, reconnecting forever; closed at cleanup.
func Connect(t testing.TB, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
