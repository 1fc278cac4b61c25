package federation_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// Environment variables of the crash test. A failing run prints its seed;
// FEDERATION_CRASH_SEED replays it.
const (
	crashChildEnv = "FEDERATION_CRASH_CHILD" // set in the child: the node's Dir
	crashStartEnv = "FEDERATION_CRASH_START" // first transaction number of the child
	crashSeedEnv  = "FEDERATION_CRASH_SEED"
	crashKeys     = 40
	crashKills    = 24
)

// crashTxn is transaction n of the workload: five distinct keys, some
// deleted, values whose size varies from a few bytes to 8 KiB. It depends
// only on n, so a transaction redone after a crash writes the same thing.
func crashTxn(n int) map[string]*string {
	ops := map[string]*string{}
	for j := 0; j < 5; j++ {
		key := fmt.Sprintf("k%02d", (n*7+j*13)%crashKeys)
		if (n+j)%5 == 0 {
			ops[key] = nil
			continue
		}
		v := fmt.Sprintf("v%d-%d-", n, j) + strings.Repeat("x", (n*j*97)%8192)
		ops[key] = &v
	}
	return ops
}

// crashModel is the state after transactions 1..n.
func crashModel(n int) map[string]string {
	m := map[string]string{}
	for i := 1; i <= n; i++ {
		for k, v := range crashTxn(i) {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = *v
			}
		}
	}
	return m
}

// crashChild writes transactions from start on, printing "ACK n" once
// Update n returned nil, until it is killed.
func crashChild(dir string, start int) {
	ctx := context.Background()
	node, err := federation.New(federation.Config{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(3)
	}
	for n := start; ; n++ {
		err := node.Update(ctx, func(tx *federation.Tx) error {
			for k, v := range crashTxn(n) {
				var err error
				if v == nil {
					err = tx.Delete("crash", k)
				} else {
					err = tx.Put("crash", k, []byte(*v))
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child: update:", err)
			os.Exit(4)
		}
		fmt.Printf("ACK %d\n", n) // os.Stdout is unbuffered: one write(2)
	}
}

// TestCrashRecovery kills a writing node with SIGKILL at random points and
// checks after each kill that every acknowledged transaction is there, whole
// (the state is that after the last acknowledged transaction, or after the
// one in flight, never in between) and that the file passes
// integrity_check.
func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		start, _ := strconv.Atoi(os.Getenv(crashStartEnv))
		crashChild(dir, start)
		return
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	t.Logf("seed %d (replay with %s=%d)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	acked, started := 0, time.Now()
	for kill := 1; kill <= crashKills; kill++ {
		last := runAndKill(t, rng, dir, acked+1)
		if last > acked {
			acked = last
		}
		verifyAfterCrash(t, dir, acked, kill)
	}
	t.Logf("%d kills, %d transactions acknowledged, %s", crashKills, acked, time.Since(started).Round(time.Millisecond))
	if acked < crashKills {
		t.Fatalf("only %d transactions acknowledged over %d runs: the child hardly wrote", acked, crashKills)
	}
}

// runAndKill starts a child writing from transaction start, kills it at a
// random point and returns the last transaction it acknowledged (start-1
// if none).
func runAndKill(t *testing.T, rng *rand.Rand, dir string, start int) int {
	t.Helper()
	cmd, acks, stderr := startChild(t, dir, start)
	last := start - 1
	record := func(n int) {
		if n != last+1 {
			t.Fatalf("child acknowledged %d after %d", n, last)
		}
		last = n
	}
	// Kill either after a random delay from start (possibly while the node
	// opens or recovers) or once a random number of transactions is
	// acknowledged, plus a little jitter.
	var deadline <-chan time.Time
	wantAcks := -1
	if rng.IntN(3) == 0 {
		deadline = time.After(time.Duration(rng.IntN(150)) * time.Millisecond)
	} else {
		wantAcks = 1 + rng.IntN(40)
	}
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case n, ok := <-acks:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("child exited before being killed: %s", stderr.String())
			}
			record(n)
			if wantAcks >= 0 && last-start+1 >= wantAcks {
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				break wait
			}
		case <-deadline:
			break wait
		case <-timeout:
			break wait
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	for n := range acks { // acknowledgements written before the kill
		record(n)
	}
	var exitErr *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v: %s", err, stderr.String())
	}
	return last
}

// startChild re-executes the test binary as a writer child and returns the
// channel of the transaction numbers it acknowledges (closed at its EOF).
func startChild(t *testing.T, dir string, start int) (*exec.Cmd, <-chan int, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(start))
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := make(chan int, 1024)
	go func() {
		defer close(acks)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
				if v, err := strconv.Atoi(n); err == nil {
					acks <- v
				}
			}
		}
	}()
	return cmd, acks, stderr
}

// verifyAfterCrash reopens dir and checks the acknowledged state is there.
func verifyAfterCrash(t *testing.T, dir string, acked, kill int) {
	t.Helper()
	ctx := context.Background()
	node, err := federation.New(federation.Config{Dir: dir})
	if err != nil {
		t.Fatalf("kill %d: reopen node: %v", kill, err)
	}
	got := map[string]string{}
	for i := 0; i < crashKeys; i++ {
		k := fmt.Sprintf("k%02d", i)
		v, err := node.Get(ctx, "crash", k)
		switch {
		case err == nil:
			got[k] = string(v)
		case !errors.Is(err, federation.ErrNotFound):
			t.Fatalf("kill %d: get %s: %v", kill, k, err)
		}
	}
	if err := node.Close(); err != nil {
		t.Fatalf("kill %d: close node: %v", kill, err)
	}
	if d := diffState(got, crashModel(acked)); d != "" {
		// The transaction in flight at the kill may have committed whole.
		if d2 := diffState(got, crashModel(acked+1)); d2 != "" {
			t.Fatalf("kill %d: after %d acknowledged transactions: %s (nor the state after %d: %s)", kill, acked, d, acked+1, d2)
		}
	}
	st, err := libsqlstore.Open(ctx, filepath.Join(dir, federation.DBFile), libsqlstore.Options{})
	if err != nil {
		t.Fatalf("kill %d: reopen store: %v", kill, err)
	}
	defer st.Close()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatalf("kill %d: %v", kill, err)
	}
}

func diffState(got, want map[string]string) string {
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			return fmt.Sprintf("%s missing (want %.12q...)", k, v)
		case g != v:
			return fmt.Sprintf("%s = %.12q..., want %.12q...", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("%s present, want deleted", k)
		}
	}
	return ""
}
