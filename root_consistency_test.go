package federation_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/devicemesh/federation"
	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/memstore"
)

// slowCommitStore is a memstore whose Commit, once the records are stored,
// runs afterStore before returning: it stretches the moment between a
// commit becoming visible to readers and the commit call returning.
type slowCommitStore struct {
	*memstore.Store
	afterStore func()
}

func (s *slowCommitStore) Commit(ctx context.Context, b core.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	if s.afterStore != nil {
		s.afterStore()
	}
	return nil
}

// TestRootCoversWhatGetSees: a reader that sees a record (Get) and then
// asks for the collection's root gets a root that covers the record. The
// Merkle trees were updated only after the store commit returned, so in
// between (while a 4 MiB value was hashed, stretched here) Root lagged
// behind Get: TestLargeValuesNeverExceedFrameLimit waited for a value with
// Get, compared roots in that window and failed under load.
func TestRootCoversWhatGetSees(t *testing.T) {
	ctx := context.Background()
	st := &slowCommitStore{Store: memstore.New()}
	n := newNode(t, st)
	type seen struct {
		value string
		root  federation.Digest
	}
	got := make(chan seen, 1)
	st.afterStore = func() {
		go func() {
			v, _ := n.Get(ctx, "notes", "k")
			got <- seen{string(v), n.Root("notes")}
		}()
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, n.Put(ctx, "notes", "k", []byte("v1")))
	st.afterStore = nil
	s := <-got
	require.Equal(t, "v1", s.value, "the reader saw the committed record")
	require.Equal(t, n.Root("notes"), s.root, "Root, read after Get saw the record, must cover it")
}
