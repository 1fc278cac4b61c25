package mailbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/devicemesh/federation/relay/server/mailtest"
)

// startRelayOn runs fedrelay on an external NATS cluster (urls).
func startRelayOn(t *testing.T, urls, logPath string) *relayProc {
	t.Helper()
	p := &relayProc{cmd: exec.Command(fedrelay(t), "-udp", "127.0.0.1:0", "-data-udp", "127.0.0.1:0", "-tls", "", "-http", "127.0.0.1:0", "-nats", urls), done: make(chan struct{})}
	return p.run(t, logPath)
}

// TestMailClusterNodeLoss: two fedrelay processes share a 3-node NATS
// cluster (the mail stream replicated three times); device a, attached to
// the first relay, mails device b while b is offline, and the NATS node
// leading the mail stream is killed between two batches of mail; b,
// attached to the second relay, later collects every write.
func TestMailClusterNodeLoss(t *testing.T) {
	root := t.TempDir()
	nodes := mailtest.Cluster(t, filepath.Join(root, "nats"), 3)
	urls := mailtest.URLs(nodes...)
	r1 := startRelayOn(t, urls, filepath.Join(root, "r1.log"))
	r2 := startRelayOn(t, urls, filepath.Join(root, "r2.log"))
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	a := openNode(t, dirA, "a", r1.udp)
	b := openNode(t, dirB, "b", r2.udp)
	pair(t, a, b)
	eventually(t, 20*time.Second, "one mesh secret", func() bool {
		sa, errA := a.MeshSecret()
		sb, errB := b.MeshSecret()
		return errA == nil && errB == nil && sa == sb
	})
	mustPut(t, a, "notes", "together", "x")
	eventually(t, 20*time.Second, "first sync", func() bool { return holds(b, "notes", "together", "x") })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	batch := func(from, to int) {
		sent := a.RelayMail().Sent
		for i := from; i < to; i++ {
			mustPut(t, a, "notes", fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
		}
		eventually(t, 60*time.Second, "a mails the batch", func() bool { return a.RelayMail().Sent > sent })
	}
	batch(0, 40)
	var leader *mailtest.Node
	eventually(t, 10*time.Second, "a mail stream leader", func() bool {
		for _, n := range nodes {
			if n.Srv != nil && n.Srv.JetStreamIsStreamLeader("$G", "FEDMAIL") {
				leader = n
			}
		}
		return leader != nil
	})
	leader.Stop()
	t.Logf("killed NATS node %s, the mail stream's leader", leader.Name)
	batch(40, 80)
	batch(80, 120)
	t.Logf("a deposited %d envelopes", a.RelayMail().Sent)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b = openNode(t, dirB, "b", r2.udp)
	eventually(t, 60*time.Second, "b collects every write", func() bool {
		for i := range 120 {
			if !holds(b, "notes", fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i)) {
				return false
			}
		}
		return true
	})
	eventually(t, 10*time.Second, "b acks everything", func() bool { st := b.RelayMail(); return st.Pending == 0 && st.Acked >= 3 })
	for _, p := range []string{"r1.log", "r2.log"} {
		if l, _ := os.ReadFile(filepath.Join(root, p)); !strings.Contains(string(l), "replicas=3") {
			t.Fatalf("%s: the mail stream is not replicated 3 times:\n%s", p, l)
		}
	}
}
