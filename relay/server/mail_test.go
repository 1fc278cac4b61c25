package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/relay/server/mailtest"
)

func startMail(t testing.TB, nc *nats.Conn, cfg MailConfig) *Mail {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := NewMail(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// dial serves a mail stream for client over a pipe and returns the
// client's end.
func dial(t testing.TB, m *Mail, client string) *relay.MailConn {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = m.Serve(ctx, client, b)
	}()
	c := relay.NewMailConn(a)
	t.Cleanup(func() { _ = c.Close(); cancel(); wg.Wait() })
	return c
}

func envelope(size int, tag byte) []byte {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	b[0] = tag
	return b
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func collectAll(t testing.TB, c *relay.MailConn, mb relay.Mailbox) []relay.Mail {
	t.Helper()
	var out []relay.Mail
	cursor := uint64(0)
	for {
		ms, next, err := c.Collect(ctxT(t), mb, cursor, relay.MaxCollect)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ms...)
		if len(ms) == 0 {
			return out
		}
		cursor = next
	}
}

func TestMailDepositCollectAck(t *testing.T) {
	n := mailtest.Single(t, t.TempDir())
	m := startMail(t, mailtest.Connect(t, n.URL()), MailConfig{})
	if m.Replicas() != 1 {
		t.Fatalf("mail stream of %d replicas on one server", m.Replicas())
	}
	c := dial(t, m, "client-a")
	ctx := ctxT(t)
	mb, other := relay.Mailbox{1}, relay.Mailbox{2}
	var sent [][]byte
	for i, size := range []int{1 << 10, 4 << 10, 1 << 10, relay.MaxEnvelope} {
		env := envelope(size, byte(i))
		if _, err := c.Deposit(ctx, mb, env); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, env)
	}
	if _, err := c.Deposit(ctx, other, envelope(1<<10, 9)); err != nil {
		t.Fatal(err)
	}
	// A size outside the buckets never reaches the store.
	if _, err := m.Deposit(ctx, "client-a", mb, make([]byte, 1000)); !errors.Is(err, relay.ErrEnvelopeSize) {
		t.Fatalf("odd size: %v", err)
	}
	got := collectAll(t, c, mb)
	if len(got) != len(sent) {
		t.Fatalf("collected %d mails, deposited %d", len(got), len(sent))
	}
	for i := range got {
		if !bytes.Equal(got[i].Envelope, sent[i]) {
			t.Fatalf("mail %d changed", i)
		}
	}
	// Collecting from a cursor returns only what follows it.
	tail, _, err := c.Collect(ctx, mb, got[1].Seq, relay.MaxCollect)
	if err != nil || len(tail) != 2 || tail[0].Seq != got[2].Seq {
		t.Fatalf("collect after %d: %d mails, %v", got[1].Seq, len(tail), err)
	}
	// An ack naming another mailbox deletes nothing.
	if n, err := c.Ack(ctx, other, []uint64{got[0].Seq}); err != nil || n != 0 {
		t.Fatalf("ack through another mailbox deleted %d (%v)", n, err)
	}
	if n, err := c.Ack(ctx, mb, []uint64{got[0].Seq, got[2].Seq}); err != nil || n != 2 {
		t.Fatalf("ack deleted %d (%v)", n, err)
	}
	left := collectAll(t, c, mb)
	if len(left) != 2 || left[0].Seq != got[1].Seq || left[1].Seq != got[3].Seq {
		t.Fatalf("after ack: %v", seqs(left))
	}
	// Acked twice: nothing more to delete, no error.
	if n, err := c.Ack(ctx, mb, []uint64{got[0].Seq}); err != nil || n != 0 {
		t.Fatalf("second ack: %d %v", n, err)
	}
	if o := collectAll(t, c, other); len(o) != 1 {
		t.Fatalf("other mailbox holds %d", len(o))
	}
}

func seqs(ms []relay.Mail) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func TestMailTTL(t *testing.T) {
	n := mailtest.Single(t, t.TempDir())
	m := startMail(t, mailtest.Connect(t, n.URL()), MailConfig{TTL: time.Second})
	c := dial(t, m, "c")
	mb := relay.Mailbox{3}
	if _, err := c.Deposit(ctxT(t), mb, envelope(1<<10, 1)); err != nil {
		t.Fatal(err)
	}
	if got := collectAll(t, c, mb); len(got) != 1 {
		t.Fatalf("fresh mail: %d", len(got))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(collectAll(t, c, mb)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("mail outlived its TTL of 1s by 9s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMailMailboxQuota(t *testing.T) {
	n := mailtest.Single(t, t.TempDir())
	m := startMail(t, mailtest.Connect(t, n.URL()), MailConfig{MailboxQuota: 3})
	c := dial(t, m, "c")
	ctx := ctxT(t)
	mb := relay.Mailbox{4}
	var first uint64
	for i := range 3 {
		seq, err := c.Deposit(ctx, mb, envelope(1<<10, byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = seq
		}
	}
	if _, err := c.Deposit(ctx, mb, envelope(1<<10, 7)); !errors.Is(err, relay.ErrMailboxFull) {
		t.Fatalf("fourth mail in a mailbox of 3: %v", err)
	}
	// Other mailboxes are not affected, and an ack makes room.
	if _, err := c.Deposit(ctx, relay.Mailbox{5}, envelope(1<<10, 8)); err != nil {
		t.Fatalf("another mailbox: %v", err)
	}
	if _, err := c.Ack(ctx, mb, []uint64{first}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deposit(ctx, mb, envelope(1<<10, 9)); err != nil {
		t.Fatalf("after an ack: %v", err)
	}
	if got := collectAll(t, c, mb); len(got) != 3 || got[2].Envelope[0] != 9 {
		t.Fatalf("mailbox holds %v", seqs(got))
	}
}

// TestMailFlood: one client deposits as fast as it can; its quota stops
// it, and another client's mail still goes through at once.
func TestMailFlood(t *testing.T) {
	n := mailtest.Single(t, t.TempDir())
	const burst = 2 << 20
	m := startMail(t, mailtest.Connect(t, n.URL()), MailConfig{ClientRate: 16 << 10, ClientBurst: burst})
	flood, good := dial(t, m, "flooder"), dial(t, m, "good")
	ctx := ctxT(t)
	heapBefore := liveHeap()
	stored, refused := 0, 0
	start := time.Now()
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		_, err := flood.Deposit(ctx, relay.Mailbox{byte(i), byte(i >> 8), 6}, envelope(64<<10, 1))
		switch {
		case err == nil:
			stored++
		case errors.Is(err, relay.ErrClientQuota):
			refused++
		default:
			t.Fatal(err)
		}
	}
	// The relay (and the embedded NATS, in this process) holds what the
	// quota admitted, not what the flood offered.
	heapAfter := liveHeap()
	t.Logf("live heap %.1f MiB before the flood, %.1f MiB after %d MiB offered", float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20), (stored+refused)*64>>10)
	if grown := int64(heapAfter) - int64(heapBefore); grown > 32<<20 {
		t.Fatalf("live heap grew by %d MiB during the flood", grown>>20)
	}
	// The burst plus 2-3 s at 16 KiB/s: 32 or 33 mails of 64 KiB.
	limit := (burst + 4*(16<<10)) / (64 << 10)
	t.Logf("flooder: %d mails stored, %d refused (quota %d bytes burst)", stored, refused, burst)
	if stored > limit || refused == 0 {
		t.Fatalf("flooder stored %d mails of 64 KiB (limit %d), %d refused", stored, limit, refused)
	}
	for i := range 20 {
		if _, err := good.Deposit(ctx, relay.Mailbox{8}, envelope(4<<10, byte(i))); err != nil {
			t.Fatalf("good client's mail %d refused during the flood: %v", i, err)
		}
	}
	if got := collectAll(t, good, relay.Mailbox{8}); len(got) != 20 {
		t.Fatalf("good client's mailbox holds %d", len(got))
	}
	// Too many streams of one client are refused too: of five streams
	// open at once (ClientStreams 4), one is refused.
	streams := []*relay.MailConn{flood}
	for range 4 {
		streams = append(streams, dial(t, m, "flooder"))
	}
	time.Sleep(100 * time.Millisecond) // every stream's Serve has begun
	refusedStreams := 0
	for _, s := range streams {
		_, _, err := s.Collect(ctx, relay.Mailbox{9}, 0, 1)
		if err != nil {
			if !errors.Is(err, relay.ErrClientQuota) {
				t.Fatal(err)
			}
			refusedStreams++
		}
	}
	if refusedStreams != 1 {
		t.Fatalf("%d of 5 streams refused, want 1", refusedStreams)
	}
}

func TestMailSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	n := mailtest.Single(t, dir)
	nc := mailtest.Connect(t, n.URL())
	m := startMail(t, nc, MailConfig{})
	c := dial(t, m, "c")
	mb := relay.Mailbox{10}
	env := envelope(16<<10, 1)
	if _, err := c.Deposit(ctxT(t), mb, env); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	n.Stop()
	n.Start(t) // same directory, same port
	m2 := startMail(t, mailtest.Connect(t, n.URL()), MailConfig{})
	got := collectAll(t, dial(t, m2, "c"), mb)
	if len(got) != 1 || !bytes.Equal(got[0].Envelope, env) {
		t.Fatalf("after restart: %d mails", len(got))
	}
}

// TestMailClusterNodeLoss: an R3 mail stream on a 3-node cluster; the
// node leading the stream is killed in the middle of the deposits, and no
// mail is lost.
func TestMailClusterNodeLoss(t *testing.T) {
	nodes := mailtest.Cluster(t, t.TempDir(), 3)
	cfg := MailConfig{} // replicas: as many as the cluster holds, 3
	m := startMail(t, mailtest.Connect(t, mailtest.URLs(nodes...)), cfg)
	if m.Replicas() != 3 {
		t.Fatalf("mail stream of %d replicas on a 3-node cluster", m.Replicas())
	}
	c := dial(t, m, "c")
	ctx := ctxT(t)
	mb := relay.Mailbox{11}
	sent := map[string]bool{}
	deposit := func(i int) {
		env := envelope(1<<10, byte(i))
		copy(env[1:], fmt.Sprintf("mail-%04d", i))
		if _, err := c.Deposit(ctx, mb, env); err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
		sent[string(env)] = true
	}
	for i := range 50 {
		deposit(i)
	}
	var leader *mailtest.Node
	for _, n := range nodes {
		if n.Srv.JetStreamIsStreamLeader("$G", cfg.withDefaults().Stream) {
			leader = n
		}
	}
	if leader == nil {
		t.Fatal("no stream leader")
	}
	leader.Stop()
	t.Logf("killed %s, the stream's leader, after 50 mails", leader.Name)
	for i := 50; i < 100; i++ {
		deposit(i)
	}
	// Collect through a fresh connection to a survivor.
	var rest []*mailtest.Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	m2 := startMail(t, mailtest.Connect(t, mailtest.URLs(rest...)), cfg)
	got := collectAll(t, dial(t, m2, "c"), mb)
	for _, g := range got {
		delete(sent, string(g.Envelope))
	}
	if len(got) != 100 || len(sent) != 0 {
		t.Fatalf("collected %d of 100 mails, %d missing", len(got), len(sent))
	}
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
