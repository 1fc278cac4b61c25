package federation

import (
	"context"

	"github.com/devicemesh/federation/core"
)

// Selective sync (see package policy for the design). A collection whose
// policy leaves values behind (ModeOnDemand; ModeSummary for the versions
// the host did not mark as summaries; a device policy that keeps the
// collection from a device) reaches a device as stubs: each record's
// version, key, size and value digest, without the value. Get on a stub
// fails with ErrNotFetched; GetRecord and Scan return it with Stub set
// and no value (Record.Size and Record.Digest describe the value). A
// fetched value installed over its stub is published as a change event. Fetch asks for the
// values; a device whose own policy carries a collection's values fetches
// its stubs by itself (also after its policy changes to carry them).

// ErrNotFetched reports a record this device holds as a stub: its value
// has not been fetched (Node.Fetch).
var ErrNotFetched = core.ErrNotFetched

// ModeSummary sends a collection's versions whole only when the host
// marked them as summaries (Tx.PutSummary), as stubs otherwise: the
// conversation-history policy of a small device, say.
const ModeSummary = core.ModeSummary

// PutSummary writes value under (collection, key), marked as a summary:
// a device with the summary policy for the collection (ModeSummary)
// receives it whole, where it receives other records as stubs.
func (tx *Tx) PutSummary(collection, key string, value []byte) error {
	if err := tx.Put(collection, key, value); err != nil {
		return err
	}
	tx.buf.MarkSummary(collection, key)
	return nil
}

// PutSummary writes value under (collection, key), marked as a summary
// (Tx.PutSummary).
func (n *Node) PutSummary(ctx context.Context, collection, key string, value []byte) error {
	return n.Update(ctx, func(tx *Tx) error { return tx.PutSummary(collection, key, value) })
}

// Fetch asks for the values of keys of collection that this device holds
// as stubs. It returns once they are on the device's wanted list, which
// is durable (it survives a restart); every connected peer, and every peer
// that connects later, is asked for them until one sends a value that
// matches its stub's digest (a value that does not is refused). Keys held
// whole, deleted or unknown are ignored. A newer version of a key
// supersedes its request: a newer stub is fetched instead, a newer whole
// version ends it. Watch for the values with Subscribe (a change event per
// key) or GetRecord.
func (n *Node) Fetch(ctx context.Context, collection string, keys ...string) error {
	return n.c.Fetch(ctx, collection, keys)
}
