package libsqlstore_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/devicemesh/federation/core"
	"github.com/devicemesh/federation/store/libsqlstore"
)

// TestChangesValuesDoNotAlias checks what Changes relies on when it keeps
// the value slices the driver returns without copying them: a value read
// stays intact while later rows and pages are read (a driver that reused
// its buffers would overwrite the values kept from earlier rows).
func TestChangesValuesDoNotAlias(t *testing.T) {
	ctx := context.Background()
	st, err := libsqlstore.Open(ctx, filepath.Join(t.TempDir(), "alias.db"), libsqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	origin := core.DeviceID{7}
	const total = 700 // more than two pages
	want := func(seq uint64) []byte {
		if seq%50 == 0 {
			return []byte{} // an empty value stays an empty value
		}
		return bytes.Repeat([]byte{byte(seq), byte(seq >> 8)}, 40+int(seq%7))
	}
	batch := core.Batch{}
	for seq := uint64(1); seq <= total; seq++ {
		r := core.Record{Collection: "c", Key: fmt.Sprintf("k%d", seq), Value: want(seq),
			Timestamp: core.Timestamp(seq), Origin: origin, Seq: seq, Context: core.VersionVector{origin: seq}}
		if seq%97 == 0 {
			r.Value, r.Deleted = nil, true
		}
		batch.Records = append(batch.Records, r)
		batch.Changes = append(batch.Changes, core.Change{Record: r, TxnFirst: 1, TxnLen: total})
	}
	if err := st.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var got []core.Change
	keep := func(c core.Change) error { got = append(got, c); return nil }
	if err := st.Changes(ctx, origin, 0, total/2, keep); err != nil {
		t.Fatal(err)
	}
	if err := st.Changes(ctx, origin, total/2, 0, keep); err != nil {
		t.Fatal(err)
	}
	if len(got) != total {
		t.Fatalf("read %d changes, want %d", len(got), total)
	}
	for i, c := range got {
		seq := uint64(i + 1)
		switch {
		case c.Seq != seq || c.Key != fmt.Sprintf("k%d", seq):
			t.Fatalf("change %d: seq %d key %q", i, c.Seq, c.Key)
		case seq%97 == 0:
			if !c.Deleted || c.Value != nil {
				t.Fatalf("change %d: deleted %v value %q, want a tombstone", seq, c.Deleted, c.Value)
			}
		case c.Deleted || c.Value == nil || !bytes.Equal(c.Value, want(seq)):
			t.Fatalf("change %d: value %x, want %x", seq, c.Value, want(seq))
		}
	}
}
