package federation_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/transport"
)

// fileNode opens (or reopens) a node on the libSQL files in dir, reachable
// over the in-memory network (real QUIC on loopback when net is nil),
// trusting every key in trust.
func fileNode(t *testing.T, net *transport.MemNetwork, dir string, trust ...federation.PublicKey) *federation.Node {
	t.Helper()
	nc := federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}
	if net != nil {
		nc = federation.NetworkConfig{Transport: memFactory(net)}
	}
	n, err := federation.New(federation.Config{Dir: dir, Network: nc})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	for _, k := range trust {
		n.TrustDevice(k)
	}
	require.NoError(t, n.Start(context.Background()))
	return n
}

// copyDir copies the regular files of src into dst (created if needed),
// replacing dst's files: a folder backup, or its restore.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dst, 0o700))
	old, err := os.ReadDir(dst)
	require.NoError(t, err)
	for _, e := range old {
		require.NoError(t, os.RemoveAll(filepath.Join(dst, e.Name())))
	}
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a -shm file the closed store removed meanwhile
		}
		require.NoError(t, err)
		out, err := os.Create(filepath.Join(dst, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, out.Close())
		require.NoError(t, in.Close())
	}
}

// putAll writes count records "<prefix>-NNN" = "<prefix> NNN", one
// transaction each, and adds them to want.
func putAll(t *testing.T, n *federation.Node, want map[string]string, prefix string, count int) {
	t.Helper()
	for i := range count {
		k, v := fmt.Sprintf("%s-%03d", prefix, i), fmt.Sprintf("%s %03d", prefix, i)
		require.NoError(t, n.Put(context.Background(), "notes", k, []byte(v)))
		want[k] = v
	}
}

// missing lists the records of want that n lacks or holds with another
// value, and the live records it holds that want does not expect.
func missing(n *federation.Node, want map[string]string) []string {
	var bad []string
	got := map[string]string{}
	_ = n.Scan(context.Background(), "notes", federation.KeyRange{}, func(r federation.Record) error {
		got[r.Key] = string(r.Value)
		return nil
	})
	for k, v := range want {
		if g, ok := got[k]; !ok {
			bad = append(bad, k+" missing")
		} else if g != v {
			bad = append(bad, fmt.Sprintf("%s=%q, want %q", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			bad = append(bad, k+" unexpected")
		}
	}
	sort.Strings(bad)
	return bad
}

// requireConverged waits until every node holds exactly want in "notes",
// with equal roots and equal version vectors.
func requireConverged(t *testing.T, want map[string]string, nodes ...*federation.Node) {
	t.Helper()
	ctx := context.Background()
	var why string
	ok := assertEventually(15*time.Second, func() bool {
		for i, n := range nodes {
			if bad := missing(n, want); len(bad) > 0 {
				if len(bad) > 8 {
					bad = append(bad[:8], fmt.Sprintf("... %d in all", len(bad)))
				}
				why = fmt.Sprintf("node %d: %s", i, strings.Join(bad, ", "))
				return false
			}
		}
		s0, err := nodes[0].Stats(ctx)
		if err != nil {
			why = err.Error()
			return false
		}
		for i, n := range nodes[1:] {
			if nodes[0].Root("notes") != n.Root("notes") {
				why = fmt.Sprintf("node %d: roots differ", i+1)
				return false
			}
			s, err := n.Stats(ctx)
			if err != nil {
				why = err.Error()
				return false
			}
			if s.VersionVector.Compare(s0.VersionVector) != core.Equal {
				why = fmt.Sprintf("node %d: version vector %v, node 0 %v", i+1, s.VersionVector, s0.VersionVector)
				return false
			}
		}
		return true
	})
	require.True(t, ok, "never converged: %s", why)
}

func assertEventually(timeout time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repairs counts the Merkle repairs of every live session of the nodes.
func repairs(nodes ...*federation.Node) uint64 {
	var r uint64
	for _, n := range nodes {
		for _, p := range n.Peers() {
			r += p.Repairs
		}
	}
	return r
}

// TestRestoredDeviceNeverLosesWrites restores a device's folder from an
// older copy after it had written (and synced) more: every write from every
// phase, including those the restored device makes before and after it
// reconnects, must end up on both devices, with equal roots, through the
// delta path (peers never skip the restored device's new writes, so no
// Merkle repair is needed).
//
// Each open of A uses a fresh folder holding a copy of the previous one (a
// device moved to a new folder is the same device: its identity is in the
// file), so the test does not depend on a closed store releasing its path.
func TestRestoredDeviceNeverLosesWrites(t *testing.T) {
	t.Run("mem", func(t *testing.T) { testRestoredDevice(t, transport.NewMemNetwork()) })
	t.Run("quic", func(t *testing.T) { testRestoredDevice(t, nil) })
}

func testRestoredDevice(t *testing.T, net *transport.MemNetwork) {
	ctx := context.Background()
	dirB, backup := t.TempDir(), t.TempDir()
	want := map[string]string{}
	move := func(a *federation.Node, from string) string {
		require.NoError(t, a.Close())
		to := t.TempDir()
		copyDir(t, from, to)
		return to
	}

	dirA := t.TempDir()
	a := fileNode(t, net, dirA)
	b := fileNode(t, net, dirB, a.PublicKey())
	a.TrustDevice(b.PublicKey())
	putAll(t, a, want, "p1", 100) // A's sequence numbers 1..100
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	requireConverged(t, want, a, b)
	dirA = move(a, dirA)
	copyDir(t, dirA, backup) // the backup

	a = fileNode(t, net, dirA, b.PublicKey())
	putAll(t, a, want, "p2", 50) // 101..150
	require.NoError(t, a.Put(ctx, "notes", "p1-000", []byte("overwritten after the backup")))
	want["p1-000"] = "overwritten after the backup"
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	requireConverged(t, want, a, b)
	require.NoError(t, a.Close())

	dirA = t.TempDir()
	copyDir(t, backup, dirA) // the restore
	a = fileNode(t, net, dirA, b.PublicKey())
	putAll(t, a, want, "p3", 10) // before reconnecting
	require.NoError(t, a.Put(ctx, "notes", "p1-001", []byte("restored device, offline")))
	want["p1-001"] = "restored device, offline"
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	requireConverged(t, want, a, b)
	require.Zero(t, repairs(a, b), "converged through a Merkle repair: a peer skipped the restored device's writes")
	rec, err := b.GetRecord(ctx, "notes", "p3-000")
	require.NoError(t, err)
	require.NotEqual(t, a.DeviceID(), rec.Origin, "written under a new incarnation")
	require.Equal(t, a.DeviceID(), b.OriginDevice(rec.Origin), "the peer knows the incarnation's device")

	putAll(t, a, want, "p4", 50) // after reconnecting
	putAll(t, b, want, "b1", 10)
	require.NoError(t, a.Put(ctx, "notes", "p1-000", []byte("restored device, online")))
	want["p1-000"] = "restored device, online"
	requireConverged(t, want, a, b)
	require.Zero(t, repairs(a, b), "converged through a Merkle repair: a peer skipped the restored device's writes")

	// And across one more restart of the restored device.
	dirA = move(a, dirA)
	a = fileNode(t, net, dirA, b.PublicKey())
	putAll(t, a, want, "p5", 20)
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	requireConverged(t, want, a, b)
	require.Zero(t, repairs(a, b), "converged through a Merkle repair")
}
