package federation_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/audit"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
	"github.com/devicemesh/federation/store/memstore"
)

// meteredStore is what a host writes to count its store's commits: it
// embeds the core.Store interface and forwards everything, which hides
// every optional capability of the store inside it (Go promotes only the
// embedded interface's methods). Unwrap (on unwrappingStore) gives them back.
type meteredStore struct {
	core.Store
	commits *atomic.Int64
}

func (m meteredStore) Commit(ctx context.Context, b core.Batch) error {
	m.commits.Add(1)
	return m.Store.Commit(ctx, b)
}

// unwrappingStore is a meteredStore that says what it wraps.
type unwrappingStore struct{ meteredStore }

func (u unwrappingStore) Unwrap() core.Store { return u.Store }

var _ core.Unwrapper = unwrappingStore{}

// openLibSQL opens (or reopens) the libSQL store at path.
func openLibSQL(t *testing.T, path string) core.Store {
	t.Helper()
	st, err := libsqlstore.Open(context.Background(), path, libsqlstore.Options{})
	require.NoError(t, err)
	return st
}

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// capabilityRun opens a node on st, trusts one device and revokes another
// (an audited registry operation), writes a record, and closes the node.
// It returns the ids it trusted and revoked and what the node logged.
func capabilityRun(t *testing.T, st core.Store) (trusted, revoked federation.DeviceID, logs string) {
	t.Helper()
	ctx := context.Background()
	var buf syncBuffer
	n, err := federation.New(federation.Config{Store: st, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	a, b := newNode(t, memstore.New()), newNode(t, memstore.New())
	n.TrustDevice(a.PublicKey())
	require.NoError(t, n.RevokeDevice(ctx, b.DeviceID()))
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("v")))
	require.NoError(t, n.Close())
	return a.DeviceID(), b.DeviceID(), buf.String()
}

// reopenOn builds a node on st again and returns it with what it logged.
func reopenOn(t *testing.T, st core.Store) (*federation.Node, string) {
	t.Helper()
	var buf syncBuffer
	n, err := federation.New(federation.Config{Store: st, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n, buf.String()
}

// trustOf returns the registry's trust level for id, or "absent" when the
// registry does not list it.
func trustOf(t *testing.T, n *federation.Node, id federation.DeviceID) string {
	t.Helper()
	devs, err := n.Devices(context.Background())
	require.NoError(t, err)
	for _, d := range devs {
		if d.ID == id {
			return d.Trust.String()
		}
	}
	return "absent"
}

// revokesAudited counts the RevokeDevice entries in n's audit log.
func revokesAudited(t *testing.T, n *federation.Node) int {
	t.Helper()
	got, err := n.Audit().Query(context.Background(), audit.Filter{Kinds: []audit.Kind{audit.KindRegistryOp}})
	require.NoError(t, err)
	c := 0
	for _, e := range got {
		if _, ok := e.Detail.Get("sessions_closed"); ok {
			c++
		}
	}
	return c
}

// TestWrappedStoreKeepsDeviceTableAndAudit: a host's wrapper around the
// libSQL store (metrics, here) that implements core.Unwrapper keeps the
// device registry and the audit log in the libSQL file, across a restart,
// and can still be backed up. Before core.Unwrapper, New found the
// database only by asserting DB() on the outermost store, so the wrapper
// silently got an in-memory registry and audit log (the trusted device
// was forgotten at restart, the audit log restarted empty) and Backup
// failed with ErrUnsupported.
func TestWrappedStoreKeepsDeviceTableAndAudit(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), federation.DBFile)
	var commits atomic.Int64
	wrap := func() core.Store {
		return unwrappingStore{meteredStore{Store: openLibSQL(t, path), commits: &commits}}
	}
	trusted, revoked, logs := capabilityRun(t, wrap())
	require.NotContains(t, logs, "level=WARN", "a wrapper that unwraps to the libSQL store has all its capabilities")

	n, logs := reopenOn(t, wrap())
	require.NotContains(t, logs, "level=WARN")
	require.Equal(t, federation.TrustTrusted.String(), trustOf(t, n, trusted), "the trusted device survives the restart")
	require.Equal(t, federation.TrustRevoked.String(), trustOf(t, n, revoked), "the revoked device stays revoked")
	require.Equal(t, 1, revokesAudited(t, n), "the audit log survives the restart")
	require.NoError(t, n.Audit().Verify(ctx))
	v, err := n.Get(ctx, "notes", "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(v))
	require.Positive(t, commits.Load(), "writes went through the wrapper")

	var copy bytes.Buffer
	require.NoError(t, n.Backup(ctx, &copy), "the wrapped store's backup is found through Unwrap")
	require.Positive(t, copy.Len())
}

// TestStoreWithoutTablesFallsBackToMemory: a store that offers no
// core.SQLStore, directly or through Unwrap (a wrapper that hides the
// libSQL store's, and the in-memory store), gets the documented fallback:
// New warns, once, that the device registry and the audit log are kept in
// memory, and they start empty at the next New while the records
// themselves persist; Backup reports ErrUnsupported. Before, the fallback
// was silent: nothing was logged.
func TestStoreWithoutTablesFallsBackToMemory(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), federation.DBFile)
	var commits atomic.Int64
	wrap := func() core.Store { return meteredStore{Store: openLibSQL(t, path), commits: &commits} }
	const warning = "device registry and audit log kept in memory"

	trusted, revoked, logs := capabilityRun(t, wrap())
	require.Contains(t, logs, "level=WARN")
	require.Contains(t, logs, warning)

	n, logs := reopenOn(t, wrap())
	require.Contains(t, logs, warning)
	require.Equal(t, "absent", trustOf(t, n, trusted), "the registry was in memory: it starts empty")
	require.Equal(t, "absent", trustOf(t, n, revoked))
	require.Zero(t, revokesAudited(t, n), "the audit log was in memory: it starts empty")
	v, err := n.Get(ctx, "notes", "k")
	require.NoError(t, err, "the records themselves are in the wrapped store")
	require.Equal(t, "v", string(v))
	require.ErrorIs(t, n.Backup(ctx, &bytes.Buffer{}), errors.ErrUnsupported)

	// The in-memory store has no database either: same warning.
	_, logs = reopenOn(t, memstore.New())
	require.Contains(t, logs, warning)
}

// TestPairedDevicesOutliveMemoryRegistry pins down the rest of the
// fallback: without core.SQLStore the device table is in memory, but the
// devices paired through the ceremony come back at the next New, since
// the signed registry operations are records of the store and New folds
// them again. What is lost is what only the table held: devices admitted
// with TrustDevice (see TestStoreWithoutTablesFallsBackToMemory), last-seen
// times, and the audit log.
func TestPairedDevicesOutliveMemoryRegistry(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), federation.DBFile)
	var commits atomic.Int64
	wrap := func() core.Store { return meteredStore{Store: openLibSQL(t, path), commits: &commits} }
	phone, err := federation.New(federation.Config{Store: wrap(), Network: federation.NetworkConfig{ListenAddr: "127.0.0.1:0"}})
	require.NoError(t, err)
	require.NoError(t, phone.Start(ctx))
	laptop := quicNode(t, "laptop")
	pairInto(t, phone, laptop)
	require.True(t, trusts(ctx, phone, laptop.DeviceID(), federation.TrustTrusted))
	before, err := phone.Audit().Query(ctx, audit.Filter{})
	require.NoError(t, err)
	require.NotEmpty(t, before, "the pairing is audited")
	require.NoError(t, phone.Close())

	phone, _ = reopenOn(t, wrap())
	require.True(t, trusts(ctx, phone, laptop.DeviceID(), federation.TrustTrusted), "the pairing is folded again from the registry's records")
	all, err := phone.Audit().Query(ctx, audit.Filter{})
	require.NoError(t, err)
	require.Empty(t, all, "the audit log of the pairing was in memory")
}
