package mailbox_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devicemesh/federation/relay"
)

// rssKiB reads a process's resident set size.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestMailFloodOtherMeshDelivers: a client of another mesh floods a
// fedrelay process with mail, from as many streams as it may open; its
// quota stops it, the relay's memory stays bounded, and two devices of a
// mesh still exchange mail through the same relay meanwhile, the
// recipient collecting over TLS on TCP.
func TestMailFloodOtherMeshDelivers(t *testing.T) {
	root := t.TempDir()
	rel := startRelay(t, filepath.Join(root, "relay-data"), filepath.Join(root, "relay.log"), false)
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	a := openNode(t, dirA, "a", rel.udp)
	b := openNode(t, dirB, "b", rel.udp)
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
	rssBefore := rssKiB(t, rel.cmd.Process.Pid)

	// The flooder: a credential of its own mesh, four streams.
	var key [32]byte
	_, _ = rand.Read(key[:])
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var stored, refused atomic.Int64
	done := make(chan error, 4)
	start := time.Now()
	for w := range 4 {
		go func() {
			c, err := relay.Dial(ctx, relay.ClientConfig{Addr: rel.udp, Credential: relay.NewCredential(key, 1)})
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			s, err := c.OpenStream(ctx, relay.KindMail)
			if err != nil {
				done <- err
				return
			}
			mc := relay.NewMailConn(s)
			env := make([]byte, 64<<10)
			for i := 0; ctx.Err() == nil; i++ {
				_, _ = rand.Read(env[:64])
				_, err := mc.Deposit(ctx, relay.Mailbox{byte(w), byte(i), byte(i >> 8)}, env)
				switch {
				case err == nil:
					stored.Add(1)
				case errors.Is(err, relay.ErrClientQuota):
					refused.Add(1)
				case ctx.Err() != nil:
				default:
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	eventually(t, 60*time.Second, "the flooder reaches its quota", func() bool { return refused.Load() > 0 })

	// Meanwhile a mails b, and b collects.
	sent := a.RelayMail().Sent
	mustPut(t, a, "notes", "during-flood", "delivered")
	eventually(t, 30*time.Second, "a mails b during the flood", func() bool { return a.RelayMail().Sent > sent })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b comes back over TLS on TCP (a network that blocks UDP).
	b = openNode(t, dirB, "b", "tls://"+rel.tls)
	eventually(t, 30*time.Second, "b collects during the flood", func() bool { return holds(b, "notes", "during-flood", "delivered") })

	stop()
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	rssAfter := rssKiB(t, rel.cmd.Process.Pid)
	// Default quota: a 16 MiB burst, then 64 KiB/s.
	limit := (16<<20 + int64(elapsed.Seconds()+1)*(64<<10)) / (64 << 10)
	t.Logf("flooder: %d envelopes of 64 KiB stored, %d refused in %v (quota allows %d); fedrelay RSS %d MiB before, %d MiB after",
		stored.Load(), refused.Load(), elapsed.Round(time.Millisecond), limit, rssBefore>>10, rssAfter>>10)
	if stored.Load() > limit {
		t.Fatalf("flooder stored %d envelopes, quota allows %d", stored.Load(), limit)
	}
	if rssAfter > 256<<10 {
		t.Fatalf("fedrelay RSS %d MiB", rssAfter>>10)
	}
}
