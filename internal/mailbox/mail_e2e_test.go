package mailbox_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/federationtest"
	"github.com/devicemesh/federation/identity"
	"github.com/devicemesh/federation/internal/wire"
	"github.com/devicemesh/federation/relay"
	"github.com/devicemesh/federation/transport"
	"github.com/stretchr/testify/require"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// fedrelay builds cmd/fedrelay once per test binary.
func fedrelay(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fedrelay-mail")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fedrelay")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/fedrelay").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// relayProc is a fedrelay process with its embedded NATS on dataDir.
type relayProc struct {
	cmd  *exec.Cmd
	udp  string
	tls  string
	http string
	done chan struct{}
}

// metric reads one series from the relay's /metrics (-1 when absent).
func (p *relayProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// startRelay runs fedrelay on dataDir (kept across restarts), its log
// appended to logPath, and waits for its READY line.
func startRelay(t *testing.T, dataDir, logPath string, debug bool) *relayProc {
	t.Helper()
	args := []string{"-udp", "127.0.0.1:0", "-data-udp", "127.0.0.1:0", "-tls", "127.0.0.1:0", "-http", "127.0.0.1:0", "-data", dataDir}
	if debug {
		args = append(args, "-debug")
	}
	p := &relayProc{cmd: exec.Command(fedrelay(t), args...), done: make(chan struct{})}
	return p.run(t, logPath)
}

// run starts the process, its log appended to logPath, and waits for its
// READY line.
func (p *relayProc) run(t *testing.T, logPath string) *relayProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") && strings.Contains(sc.Text(), "udp=") {
				ready <- sc.Text()
			}
		}
	}()
	go func() { _ = p.cmd.Wait(); _ = logf.Close(); close(p.done) }()
	t.Cleanup(p.stop)
	select {
	case l := <-ready:
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "udp="); ok {
				p.udp = v
			}
			if v, ok := strings.CutPrefix(f, "tls="); ok {
				p.tls = v
			}
			if v, ok := strings.CutPrefix(f, "http="); ok {
				p.http = v
			}
		}
	case <-p.done:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("fedrelay exited:\n%s", b)
	case <-time.After(90 * time.Second):
		t.Fatal("fedrelay not ready")
	}
	return p
}

// stop ends the relay gracefully (SIGTERM).
func (p *relayProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

var limits = transport.Limits{IdleTimeout: 3 * time.Second, KeepAlive: 500 * time.Millisecond, HandshakeTimeout: 3 * time.Second}

// openNode opens (or reopens) the node on dir, a libSQL file, attached to
// the relay, and starts it.
func openNode(t *testing.T, dir, name, relayAddr string) *federation.Node {
	t.Helper()
	n, err := federation.New(federation.Config{
		Dir:     dir,
		Device:  federation.DeviceConfig{Name: name, Type: "test"},
		Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0", Limits: limits},
		Relay: federation.RelayConfig{Addr: relayAddr, Mail: federation.RelayMailConfig{
			OfflineAfter: 300 * time.Millisecond, Interval: 200 * time.Millisecond,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// pair pairs joiner into host's mesh (directly).
func pair(t *testing.T, host, joiner *federation.Node) { federationtest.Pair(t, host, joiner) }

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	require.Eventuallyf(t, cond, d, 20*time.Millisecond, "%s: not within %v", what, d)
}

func holds(n *federation.Node, coll, key, want string) bool {
	v, err := n.Get(context.Background(), coll, key)
	return err == nil && string(v) == want
}

func mustPut(t *testing.T, n *federation.Node, coll, key, val string) {
	t.Helper()
	if err := n.Put(context.Background(), coll, key, []byte(val)); err != nil {
		t.Fatal(err)
	}
}

// TestMailOfflineDevicesConverge: two devices on libSQL files, after one
// session together, are never online at the same time again; they
// converge through relay mail alone, with the relay restarted between a
// deposit and its collection. A forged envelope in the recipient's
// mailbox is refused; acknowledged mail is gone; a unique marker written
// on either device never appears in any byte the relay stored (its
// JetStream files) or logged.
func TestMailOfflineDevicesConverge(t *testing.T) {
	root := t.TempDir()
	data, logPath := filepath.Join(root, "relay-data"), filepath.Join(root, "relay.log")
	rel := startRelay(t, data, logPath, true)
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	a := openNode(t, dirA, "a", rel.udp)
	b := openNode(t, dirB, "b", rel.udp)
	pair(t, a, b)
	eventually(t, 20*time.Second, "one mesh secret", func() bool {
		sa, errA := a.MeshSecret()
		sb, errB := b.MeshSecret()
		return errA == nil && errB == nil && sa == sb
	})
	mustPut(t, a, "notes", "together", "both online")
	eventually(t, 20*time.Second, "first sync", func() bool { return holds(b, "notes", "together", "both online") })
	idA, idB := a.DeviceID(), b.DeviceID()

	// From here on, never both online.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	markA := "marker-a-" + randHex(t)
	for i := range 20 {
		mustPut(t, a, "notes", "a"+string(rune('a'+i)), markA+" "+strings.Repeat("x", i*100))
	}
	mustPut(t, a, "notes", "marked-a", markA)
	eventually(t, 20*time.Second, "a mails b", func() bool { return a.RelayMail().Sent > 0 })
	time.Sleep(500 * time.Millisecond) // rounds after the deposit: nothing more to mail
	sentA := a.RelayMail().Sent
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("a deposited %d envelopes", sentA)

	// The relay restarts between deposit and collection: JetStream on disk
	// keeps the mail.
	rel.stop()
	rel = startRelay(t, data, logPath, true)

	// The mail is on the relay's disk now, sealed.
	if n := scanRelay(t, root, data, logPath, markA); n < 1<<10 {
		t.Fatalf("the relay's mail blocks hold %d bytes, a's mail is not among them", n)
	}
	b = openNode(t, dirB, "b", rel.udp)
	// A forged envelope, claiming to come from a, signed by a stranger.
	forgeMail(t, b, rel.udp, idA, idB)
	eventually(t, 30*time.Second, "b collects a's mail", func() bool { return holds(b, "notes", "marked-a", markA) })
	eventually(t, 10*time.Second, "b refuses the forgery", func() bool { return b.RelayMail().Refused > 0 })
	if _, err := b.Get(context.Background(), "notes", "forged"); err == nil {
		t.Fatal("b applied a forged envelope")
	}
	for i := range 20 {
		if !holds(b, "notes", "a"+string(rune('a'+i)), markA+" "+strings.Repeat("x", i*100)) {
			t.Fatalf("b lacks a's write %d", i)
		}
	}
	// Acknowledged mail is deleted: later rounds collect nothing more.
	eventually(t, 10*time.Second, "b acks", func() bool { return b.RelayMail().Acked >= sentA+1 })
	recv := b.RelayMail().Received
	time.Sleep(time.Second) // five rounds
	if st := b.RelayMail(); st.Received != recv || st.Pending != 0 {
		t.Fatalf("mail left at the relay after ack: received %d then %d, pending %d", recv, st.Received, st.Pending)
	}

	// The restarted relay stored the forgery (and b's own mail to a, of
	// its audit heads, say), handed a's mail and the forgery to b, and
	// deleted both on b's ack.
	if dep, col, ack := rel.metric(t, "fedrelay_mail_deposited_total"), rel.metric(t, "fedrelay_mail_collected_total"), rel.metric(t, "fedrelay_mail_acked_total"); dep < 1 || col < float64(sentA)+1 || ack < float64(sentA)+1 {
		t.Fatalf("relay metrics: deposited %v collected %v acked %v", dep, col, ack)
	}

	markB := "marker-b-" + randHex(t)
	mustPut(t, b, "notes", "marked-b", markB)
	mustPut(t, b, "notes", "together", "b's word")
	eventually(t, 20*time.Second, "b mails a", func() bool { return b.RelayMail().Sent > 0 })
	time.Sleep(500 * time.Millisecond)
	rootB := b.Root("notes")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	a = openNode(t, dirA, "a", rel.udp)
	eventually(t, 30*time.Second, "a collects b's mail", func() bool { return holds(a, "notes", "marked-b", markB) })
	eventually(t, 10*time.Second, "a converges", func() bool { return a.Root("notes") == rootB })
	if !holds(a, "notes", "together", "b's word") {
		t.Fatal("a lacks b's overwrite")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rel.stop()

	// Plaintext: no marker in any byte the relay stored or logged.
	scanRelay(t, root, data, logPath, markA, markB)
}

// scanRelay fails t when a marker (or the keys it was written under)
// appears in any file of the relay's store or its log, and returns the
// bytes of the mail stream's message blocks.
func scanRelay(t *testing.T, root, data, logPath string, marks ...string) int64 {
	t.Helper()
	marks = append(marks, "marked-a", "marked-b")
	files, blocks := 0, int64(0)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasPrefix(path, data) && path != logPath {
			return nil // the devices' own files
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if strings.Contains(path, "FEDMAIL") && strings.HasSuffix(path, ".blk") {
			blocks += int64(len(b))
		}
		for _, m := range marks {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("%q found in the relay's %s", m, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checked %d relay files (JetStream store and log, %d bytes of mail blocks): no marker", files, blocks)
	return blocks
}

func randHex(t *testing.T) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// forgeMail deposits in to's current mailbox a letter from a device of no
// mesh, holding a change of device from to notes/forged: the forger knows
// the mailbox (as a relay operator cannot) and the recipient's key, and
// still cannot make it accepted. (Forged signatures under a trusted
// sender's id are refused in package relay's TestOpenRefuses.)
func forgeMail(t *testing.T, to *federation.Node, relayAddr string, from, toID core.DeviceID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sec, err := to.MeshSecret()
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := identity.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	epoch := relay.EpochAt(time.Now(), 0)
	body := wire.AppendChanges(nil, []core.Change{{
		Record: core.Record{Collection: "notes", Key: "forged", Value: []byte("evil"), Timestamp: 1,
			Origin: from, Seq: 1 << 40, Context: core.VersionVector{from: 1 << 40}},
		TxnFirst: 1 << 40, TxnLen: 1,
	}})
	env, err := relay.Seal(relay.Letter{Sender: stranger.DeviceID(), Recipient: toID, Epoch: epoch, Kind: relay.LetterChanges, Body: body}, stranger, to.PublicKey(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := relay.Dial(ctx, relay.ClientConfig{Addr: relayAddr, Credential: relay.NewCredential(sec.Key, sec.Generation)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.OpenStream(ctx, relay.KindMail)
	if err != nil {
		t.Fatal(err)
	}
	mc := relay.NewMailConn(s)
	defer mc.Close()
	if _, err := mc.Deposit(ctx, relay.MailboxFor(sec.Key, sec.Generation, toID, epoch), env); err != nil {
		t.Fatal(err)
	}
}
