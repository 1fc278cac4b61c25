package federation_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/store/memstore"
	"github.com/devicemesh/federation/transport"
)

// model records acknowledged writes from several goroutines.
type model struct {
	mu sync.Mutex
	m  map[string]string
}

func (m *model) put(t *testing.T, n *federation.Node, k, v string) {
	require.NoError(t, m.try(n, k, v))
}

// try writes k=v and records it once acknowledged; safe from any goroutine.
func (m *model) try(n *federation.Node, k, v string) error {
	if err := n.Put(context.Background(), "notes", k, []byte(v)); err != nil {
		return err
	}
	m.mu.Lock()
	m.m[k] = v
	m.mu.Unlock()
	return nil
}

func (m *model) snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.m))
	for k, v := range m.m {
		out[k] = v
	}
	return out
}

// TestBackupUnderLoadRestores takes a backup of a device while it and a peer
// write, restores it into a fresh device (a phone restored from a backup),
// and checks that the restored device converges with the mesh, that
// nothing written after the backup anywhere is lost (its own later writes
// included), and that nothing it writes after the restore is lost or
// skipped, before or after it reconnects.
func TestBackupUnderLoadRestores(t *testing.T) {
	for _, kind := range []string{"libsql", "mem"} {
		t.Run(kind, func(t *testing.T) { testBackupUnderLoad(t, kind) })
	}
}

func testBackupUnderLoad(t *testing.T, kind string) {
	ctx := context.Background()
	net := transport.NewMemNetwork()
	open := func(cfg federation.Config, trust ...federation.PublicKey) *federation.Node {
		cfg.Network.Transport = memFactory(net)
		n, err := federation.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		for _, k := range trust {
			n.TrustDevice(k)
		}
		require.NoError(t, n.Start(ctx))
		return n
	}
	aCfg := federation.Config{Dir: t.TempDir()}
	if kind == "mem" {
		aCfg = federation.Config{Store: memstore.New()}
	}
	a := open(aCfg)
	b := open(federation.Config{Dir: t.TempDir()}, a.PublicKey())
	c := open(federation.Config{Dir: t.TempDir()}, a.PublicKey(), b.PublicKey())
	a.TrustDevice(b.PublicKey())
	a.TrustDevice(c.PublicKey())
	b.TrustDevice(c.PublicKey())
	require.NoError(t, a.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, a.Connect(ctx, c.Addr(), c.DeviceID()))
	require.NoError(t, b.Connect(ctx, c.Addr(), c.DeviceID()))

	want := &model{m: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := func(n *federation.Node, name string) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(i/1000) * time.Millisecond): // slow down past 1,000
			}
			err := want.try(n, fmt.Sprintf("%s-%05d", name, i), fmt.Sprintf("%s %d", name, i))
			if err == nil && i%7 == 0 { // and overwrite shared keys, concurrently
				err = want.try(n, fmt.Sprintf("shared-%d", i%5), fmt.Sprintf("%s %d", name, i))
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}
	wg.Add(2)
	go load(a, "a")
	go load(b, "b")
	time.Sleep(300 * time.Millisecond)
	var backup bytes.Buffer
	require.NoError(t, a.Backup(ctx, &backup))
	taken := want.snapshot()
	time.Sleep(300 * time.Millisecond) // writes after the backup, on both
	close(stop)
	wg.Wait()
	// Shared keys were written concurrently: the mesh settles them by its
	// resolver, so only their agreement is checked, not their value.
	settled := func() map[string]string {
		m := want.snapshot()
		for k := range m {
			if len(k) > 7 && k[:7] == "shared-" {
				delete(m, k)
			}
		}
		return m
	}
	requireConvergedExcept(t, settled(), a, b, c)
	after := len(want.snapshot()) - len(taken)
	t.Logf("backup of %d bytes taken with %d keys written; %d more written after it", backup.Len(), len(taken), after)
	require.Positive(t, after, "the load went on after the backup")
	require.NoError(t, a.Close())

	// Restore into a fresh device: the same identity from the copy.
	var rCfg federation.Config
	if kind == "mem" {
		st, err := memstore.Restore(bytes.NewReader(backup.Bytes()))
		require.NoError(t, err)
		rCfg = federation.Config{Store: st}
	} else {
		dir := t.TempDir()
		require.NoError(t, federation.Restore(dir, bytes.NewReader(backup.Bytes())))
		rCfg = federation.Config{Dir: dir}
	}
	r := open(rCfg, b.PublicKey(), c.PublicKey())
	require.Equal(t, a.DeviceID(), r.DeviceID(), "the restored device keeps its identity")
	for i := range 30 { // before reconnecting
		want.put(t, r, fmt.Sprintf("restored-offline-%02d", i), "offline")
	}
	require.NoError(t, r.Connect(ctx, b.Addr(), b.DeviceID()))
	require.NoError(t, r.Connect(ctx, c.Addr(), c.DeviceID()))
	requireConvergedExcept(t, settled(), r, b, c)
	for i := range 30 { // after reconnecting and catching up
		want.put(t, r, fmt.Sprintf("restored-online-%02d", i), "online")
		want.put(t, b, fmt.Sprintf("b-after-restore-%02d", i), "b")
	}
	requireConvergedExcept(t, settled(), r, b, c)
}

// requireConvergedExcept is requireConverged for a model that leaves some
// keys out: those must only be equal everywhere.
func requireConvergedExcept(t *testing.T, want map[string]string, nodes ...*federation.Node) {
	t.Helper()
	full := func() map[string]string {
		m := map[string]string{}
		for k, v := range want {
			m[k] = v
		}
		// Take the first node's value for the keys the model leaves out;
		// requireConverged then checks every node holds the same.
		_ = nodes[0].Scan(context.Background(), "notes", federation.KeyRange{}, func(r federation.Record) error {
			if _, ok := want[r.Key]; !ok {
				m[r.Key] = string(r.Value)
			}
			return nil
		})
		return m
	}
	var last map[string]string
	var bad []string
	ok := assertEventually(20*time.Second, func() bool {
		last, bad = full(), nil
		for i, n := range nodes {
			for _, m := range missing(n, last) {
				bad = append(bad, fmt.Sprintf("node %d: %s", i, m))
			}
		}
		return len(bad) == 0
	})
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("... %d in all", len(bad)))
	}
	require.True(t, ok, "never held the same records: %v", bad)
	requireConverged(t, last, nodes...)
}

// TestRestoreReplacesStoreFiles: Restore puts a backup in place of a
// directory's store, WAL included, and a node opened there holds the
// backup's state.
func TestRestoreReplacesStoreFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n, backup := nodeWithBackup(t, dir)
	id := n.DeviceID()
	require.NoError(t, n.Close())
	var err error

	target := t.TempDir() // a copy of the folder, restored in place
	copyDir(t, dir, target)
	require.NoError(t, federation.Restore(target, backup))
	_, err = os.Stat(filepath.Join(target, federation.DBFile+"-wal"))
	require.ErrorIs(t, err, os.ErrNotExist, "the newer WAL must not be replayed over the backup")
	n, err = federation.New(federation.Config{Dir: target})
	require.NoError(t, err)
	defer n.Close()
	require.Equal(t, id, n.DeviceID())
	v, err := n.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "in the backup", string(v))
}

// nodeWithBackup opens a node on dir, writes notes/k = "in the backup",
// takes a backup, then overwrites the key with "after the backup".
func nodeWithBackup(t *testing.T, dir string) (*federation.Node, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	n, err := federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("in the backup")))
	var backup bytes.Buffer
	require.NoError(t, n.Backup(ctx, &backup))
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("after the backup")))
	return n, &backup
}

// TestRestoreRefusedWhileOpen: Restore takes the directory's lock, so it
// cannot swap the file under a running node; once the node is closed the
// same restore goes through in place, and the device keeps its identity.
func TestRestoreRefusedWhileOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n, backup := nodeWithBackup(t, dir)
	id := n.DeviceID()

	err := federation.Restore(dir, bytes.NewReader(backup.Bytes()))
	require.ErrorIs(t, err, federation.ErrLocked)
	v, err := n.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "after the backup", string(v), "a refused restore must leave the running node's data alone")
	require.NoError(t, n.Close())

	require.NoError(t, federation.Restore(dir, backup))
	n, err = federation.New(federation.Config{Dir: dir})
	require.NoError(t, err)
	defer n.Close()
	require.Equal(t, id, n.DeviceID())
	v, err = n.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "in the backup", string(v))
	require.ErrorIs(t, federation.Restore("", backup), federation.ErrInvalidArgument)
}
